"""How much one authenticated user may submit per hour: `[submission] messages_per_hour` and
`recipients_per_hour`, counted in the store (`SubmissionCounts`) so every node of a cluster
shares the count, and a stolen password cannot make the provider a spam source.

The window slides: the previous hour's count weighs in by the share of it still inside the last
60 minutes (a sliding-window estimate from two fixed hours, one row per user and hour), so a
sender cannot send a full hour's worth just before the hour turns and again just after.

Per message: one read at MAIL FROM (already over? refuse there), none at RCPT TO (the count read
at MAIL plus the envelope's recipients), and at the end of DATA one conditional upsert that
takes the message and its recipients only if the hour stays within the bound. That upsert is
atomic on both engines, so connections racing on every node never pass the bound together; a
message the store then fails to commit gives its count back. Refusals are 451 4.7.1 (RFC 3463:
delivery not authorized... for now), logged with the account and counted in
`mailfort_submission_rate_limited`, where an operator sees a stolen account.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from mailfort.metrics import NodeMetrics
from mailfort.protocol.smtp import replies as R
from mailfort.store.roles import SubmissionCounts

log = logging.getLogger("mailfort.smtp")

HOUR = 3600


@dataclass(frozen=True, slots=True)
class Usage:
    """What a user has sent in the sliding hour, as read at MAIL FROM."""

    hour: int  # the current hour's number (store time // 3600)
    carried_messages: int  # the previous hour's share still inside the last 60 minutes
    carried_recipients: int
    messages: int  # in the current hour
    recipients: int


@dataclass(frozen=True, slots=True)
class Taken:
    """A message counted by `SubmissionLimit.take`, to give back if it is not stored."""

    user: str
    hour: int
    recipients: int


class SubmissionLimit:
    def __init__(
        self,
        store: SubmissionCounts,
        *,
        messages_per_hour: int,
        recipients_per_hour: int,
        clock: Callable[[], float],
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.store = store
        self.messages_per_hour = messages_per_hour
        self.recipients_per_hour = recipients_per_hour
        self.clock = clock
        self.metrics = metrics

    @property
    def enabled(self) -> bool:
        return bool(self.messages_per_hour or self.recipients_per_hour)

    async def usage(self, user: str) -> Usage:
        """Raises StoreError when the counts cannot be read."""
        now = self.clock()
        hour = int(now // HOUR)
        counts = await self.store.submission_counts(user, (hour - 1, hour))
        previous = counts.get(hour - 1, (0, 0))
        current = counts.get(hour, (0, 0))
        weight = 1.0 - (now - hour * HOUR) / HOUR
        return Usage(
            hour=hour,
            carried_messages=_share(previous[0], weight),
            carried_recipients=_share(previous[1], weight),
            messages=current[0],
            recipients=current[1],
        )

    def refusal(self, user: str, usage: Usage, recipients: int, ip: str) -> str | None:
        """At MAIL (`recipients` 0) and RCPT (the envelope's, this one included): the 451 when
        one more message, or this many recipients, would pass a bound."""
        over = None
        if self.messages_per_hour and (
            usage.carried_messages + usage.messages + 1 > self.messages_per_hour
        ):
            over = "messages"
        elif self.recipients_per_hour and (
            usage.carried_recipients + usage.recipients + max(1, recipients)
            > self.recipients_per_hour
        ):
            over = "recipients"
        return None if over is None else self._refuse(user, over, ip)

    async def take(self, user: str, usage: Usage, recipients: int, ip: str) -> Taken | str:
        """At the end of DATA: count the message, or the 451 when the hour has no room left
        for it (other connections of the user took it since MAIL). Raises StoreError."""
        hour = int(self.clock() // HOUR)
        if hour != usage.hour:
            usage = await self.usage(user)  # the hour turned since MAIL
        # The carried share only shrinks as time passes: the one read at MAIL is a safe bound.
        max_messages = self._room(self.messages_per_hour, usage.carried_messages)
        max_recipients = self._room(self.recipients_per_hour, usage.carried_recipients)
        if max_messages < 0 or max_recipients < 0:
            return self._refuse(user, "messages" if max_messages < 0 else "recipients", ip)
        ok = await self.store.take_submission(
            user,
            usage.hour,
            1,
            recipients,
            max_messages=max_messages,
            max_recipients=max_recipients,
        )
        if not ok:
            return self._refuse(user, "hour", ip)
        return Taken(user, usage.hour, recipients)

    async def give_back(self, taken: Taken | None) -> None:
        """The message was not stored: it does not count. Best effort (the store may be down)."""
        if taken is None:
            return
        try:
            await self.store.return_submission(taken.user, taken.hour, 1, taken.recipients)
        except Exception as exc:  # counted once too often is the safe side of a limit
            log.warning("event=submission_count_not_returned user=%s error=%s", taken.user, exc)

    @staticmethod
    def _room(bound: int, carried: int) -> int:
        """The maximum for the current hour's count (0 means none to the store, so a bound the
        carried share fills is -1: refused without asking)."""
        if not bound:
            return 0
        room = bound - carried
        return room if room > 0 else -1

    def _refuse(self, user: str, limit: str, ip: str) -> str:
        log.warning(
            "event=submission_rate_limited user=%s limit=%s client=%s messages_per_hour=%d"
            " recipients_per_hour=%d",
            user,
            limit,
            ip,
            self.messages_per_hour,
            self.recipients_per_hour,
        )
        if self.metrics is not None:
            self.metrics.submission_rate_limited(limit)
        return R.SENDING_RATE_EXCEEDED


def _share(count: int, weight: float) -> int:
    """The part of the previous hour's count still inside the window, rounded up (a sender
    gains nothing from rounding); the epsilon keeps 10 x 0.7 at 7."""
    return math.ceil(count * weight - 1e-9)
