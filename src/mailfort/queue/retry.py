"""When a remote recipient is tried again, when it is given up, and when its sender is warned.

- After a temporary failure: exponential backoff with full jitter (`schedule.next_delay`), never
  past the end of the item's lifetime, so the last attempt happens at that end.
- A temporary failure at or after the end of the lifetime (measured from acceptance) is final:
  the recipient bounces like a permanent failure.
- Once per recipient, when it has waited `delay_warning` and is still being retried, its sender
  gets a delay warning; never for a null sender.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mailfort.queue.schedule import next_delay
from mailfort.store.records import QueueItem


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    lifetime: float = 5 * 86400.0
    delay_warning: float = 4 * 3600.0  # 0: never warn
    base: float = 300.0
    cap: float = 4000.0

    def expires(self, item: QueueItem) -> float:
        return item.received + self.lifetime

    def expired(self, item: QueueItem, now: float) -> bool:
        return now >= self.expires(item)

    def next_attempt(self, item: QueueItem, now: float, rng: random.Random | None = None) -> float:
        delay = next_delay(item.attempts, base=self.base, cap=self.cap, rng=rng)
        return min(now + delay, max(now, self.expires(item)))

    def should_warn(self, item: QueueItem, now: float) -> bool:
        return (
            self.delay_warning > 0
            and not item.warned
            and bool(item.sender)
            and now - item.received >= self.delay_warning
            and not self.expired(item, now)
        )
