"""A measured profile: what one node costs per unit of work, on the machine it was measured on.

Written by `mailfort capacity measure` (JSON), read by the planner and by a running cluster for
its live margin. Every figure is a measurement, never a default: a profile that lacks one is
refused, so a plan never quietly rests on a guess. A profile names the machine, the engine and
the mailfort version it came from; costs change between versions, so one from another version
is refused unless the caller accepts it knowingly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailfort import __version__
from mailfort.errors import MailfortError

FORMAT = "mailfort-capacity-profile"
# The layout of the JSON; bumped when a field changes meaning, so an old planner cannot misread.
SCHEMA = 1
PROTOCOLS = ("smtp", "imap", "pop3")


class ProfileError(MailfortError):
    """A profile that cannot be used; the message is one line naming the file and the fault."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    """Where the profile was measured: a plan for other hardware scales by `cpus`."""

    hostname: str
    cpu_model: str
    cpus: int  # logical CPUs of the machine
    memory_bytes: int
    kernel: str
    python: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeClass:
    """Accepted messages up to `max_bytes` (0: no upper bound) cost `cpu_seconds` each."""

    name: str
    max_bytes: int
    measured_bytes: int  # the size the measurement sent
    cpu_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    mailfort_version: str
    measured_at: str  # ISO 8601, UTC
    machine: Machine
    engine: str  # sqlite | postgresql
    source: str  # benchmark | metrics
    # CPUs the measured node could use at once (its workers, or a CPU quota): the servers of
    # the queueing model. A planned node with other hardware scales this (workload `[cluster]`).
    node_cpus: float
    accept: tuple[SizeClass, ...]  # ordered by max_bytes, the last unbounded
    remote_delivery_cpu: float  # one message handed to a remote MX, per recipient
    imap_login_cpu: float  # connect, LOGIN, SELECT INBOX, LOGOUT
    header_fetch_cpu: float  # one `FETCH 1:n (FLAGS ENVELOPE ...)`, the part independent of n
    header_fetch_per_message_cpu: float  # ... and per message it returns
    pop3_session_cpu: float  # connect, USER/PASS, STAT, UIDL, QUIT
    commit_p50_seconds: float  # the store's durable commit, seen from the node
    commit_p99_seconds: float
    db_cpu_per_message: float | None  # the database server's CPU per accepted message (PostgreSQL)
    memory_base_bytes: int  # a node's resident memory with no connection
    memory_per_connection_bytes: Mapping[str, int] = field(default_factory=dict)  # by protocol
    # The node at saturation: the adaptive limit it settled on, the messages it accepted per
    # second, and the share it refused meanwhile.
    saturation_limit: int
    saturation_messages_per_second: float
    saturation_refused_share: float
    # A connection turned away (connect, banner or 421, close): refusals are not free, and an
    # overloaded node that refuses the retries of what it refused spends its CPU on that.
    # None in a profile that did not measure it: the planner then counts refusals as free.
    refusal_cpu: float | None = None
    notes: tuple[str, ...] = ()

    def size_class(self, size: int) -> SizeClass:
        for c in self.accept:
            if c.max_bytes == 0 or size <= c.max_bytes:
                return c
        return self.accept[-1]

    def class_named(self, name: str) -> SizeClass | None:
        return next((c for c in self.accept if c.name == name), None)

    def header_fetch_seconds(self, messages: int) -> float:
        return self.header_fetch_cpu + messages * self.header_fetch_per_message_cpu

    def to_json(self) -> str:
        data: dict[str, Any] = {"format": FORMAT, "schema": SCHEMA, **asdict(self)}
        data["accept"] = [asdict(c) for c in self.accept]
        data["notes"] = list(self.notes)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"


def _number(data: Mapping[str, Any], key: str, where: str, *, allow_zero: bool = False) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileError(f"{where}: {key} must be a number, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ProfileError(f"{where}: {key} must be {'>= 0' if allow_zero else '> 0'}: {value}")
    return float(value)


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProfileError(f"{where}: {key} must be a string, not {value!r}")
    return value


def profile_from_dict(data: Any, where: str = "profile", *, any_version: bool = False) -> Profile:
    """Check and read a profile; `any_version` accepts one measured by another mailfort."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f'{where}: not a mailfort capacity profile (no "format": {FORMAT!r})')
    if data.get("schema") != SCHEMA:
        raise ProfileError(
            f"{where}: profile schema {data.get('schema')!r}, this mailfort reads schema {SCHEMA};"
            " measure again with `mailfort capacity measure`"
        )
    version = _text(data, "mailfort_version", where)
    if version != __version__ and not any_version:
        raise ProfileError(
            f"{where}: measured with mailfort {version}, this is {__version__} (costs change"
            " between versions); measure again with `mailfort capacity measure`, or pass"
            " --any-version to use it anyway"
        )
    m = data.get("machine")
    if not isinstance(m, dict):
        raise ProfileError(f"{where}: machine must be an object")
    machine = Machine(
        hostname=_text(m, "hostname", where),
        cpu_model=_text(m, "cpu_model", where),
        cpus=int(_number(m, "cpus", where)),
        memory_bytes=int(_number(m, "memory_bytes", where)),
        kernel=_text(m, "kernel", where),
        python=_text(m, "python", where),
    )
    raw_classes = data.get("accept")
    if not isinstance(raw_classes, list) or not raw_classes:
        raise ProfileError(f"{where}: accept must be a non-empty list of size classes")
    classes = []
    for i, c in enumerate(raw_classes):
        if not isinstance(c, dict):
            raise ProfileError(f"{where}: accept[{i}] must be an object")
        classes.append(
            SizeClass(
                name=_text(c, "name", where),
                max_bytes=int(_number(c, "max_bytes", f"{where} accept[{i}]", allow_zero=True)),
                measured_bytes=int(_number(c, "measured_bytes", f"{where} accept[{i}]")),
                cpu_seconds=_number(c, "cpu_seconds", f"{where} accept[{i}]"),
            )
        )
    bounded = [c.max_bytes for c in classes[:-1]]
    if (
        any(b == 0 for b in bounded)
        or bounded != sorted(bounded)
        or len(set(bounded)) < len(bounded)
    ):
        raise ProfileError(
            f"{where}: accept classes must grow in max_bytes, the last unbounded (0)"
        )
    db_cpu = data.get("db_cpu_per_message")
    memory = data.get("memory_per_connection_bytes") or {}
    if not isinstance(memory, dict):
        raise ProfileError(f"{where}: memory_per_connection_bytes must be an object")
    engine = _text(data, "engine", where)
    if engine not in ("sqlite", "postgresql"):
        raise ProfileError(f"{where}: engine must be sqlite or postgresql, not {engine!r}")
    return Profile(
        mailfort_version=version,
        measured_at=_text(data, "measured_at", where),
        machine=machine,
        engine=engine,
        source=_text(data, "source", where),
        node_cpus=_number(data, "node_cpus", where),
        accept=tuple(classes),
        remote_delivery_cpu=_number(data, "remote_delivery_cpu", where),
        imap_login_cpu=_number(data, "imap_login_cpu", where),
        header_fetch_cpu=_number(data, "header_fetch_cpu", where, allow_zero=True),
        header_fetch_per_message_cpu=_number(data, "header_fetch_per_message_cpu", where),
        pop3_session_cpu=_number(data, "pop3_session_cpu", where),
        commit_p50_seconds=_number(data, "commit_p50_seconds", where),
        commit_p99_seconds=_number(data, "commit_p99_seconds", where),
        db_cpu_per_message=(
            None if db_cpu is None else _number(data, "db_cpu_per_message", where, allow_zero=True)
        ),
        memory_base_bytes=int(_number(data, "memory_base_bytes", where)),
        memory_per_connection_bytes={
            str(k): int(_number(memory, k, f"{where} memory_per_connection_bytes")) for k in memory
        },
        saturation_limit=int(_number(data, "saturation_limit", where)),
        saturation_messages_per_second=_number(data, "saturation_messages_per_second", where),
        saturation_refused_share=_number(data, "saturation_refused_share", where, allow_zero=True),
        refusal_cpu=(
            None
            if data.get("refusal_cpu") is None
            else _number(data, "refusal_cpu", where, allow_zero=True)
        ),
        notes=tuple(str(n) for n in data.get("notes") or ()),
    )


def load_profile(path: str | Path, *, any_version: bool = False) -> Profile:
    """Read a profile file; every fault is a ProfileError naming the file."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProfileError(f"{where}: not JSON: {exc}") from None
    return profile_from_dict(data, where, any_version=any_version)
