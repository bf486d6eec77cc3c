"""The history of a campaign: every client operation and every fault, with its times and outcome.

An operation is `ok` (the server said yes), `fail` (the server said no: a refusal, 4xx or 5xx, `NO`,
`-ERR`) or `unknown` (the connection broke or timed out before the answer: the operation may or may
not have happened, and the checker must allow both). Faults are recorded the same way, by the
client "nemesis". The history is kept in memory and written as JSON lines, so a failed run can be
read afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"


@dataclass
class Op:
    id: int
    client: str  # "mx-3", "imap-1", "nemesis"
    f: str  # what was done: "send", "append", "kill", "partition-db" ...
    node: str  # the node it went to (or the fault's target)
    args: dict[str, Any]
    start: float  # time.time()
    end: float = 0.0
    outcome: str = UNKNOWN
    result: dict[str, Any] = field(default_factory=dict)

    def ok(self, **result: Any) -> None:
        self.outcome = OK
        self.result.update(result)

    def fail(self, **result: Any) -> None:
        self.outcome = FAIL
        self.result.update(result)

    def unknown(self, **result: Any) -> None:
        self.outcome = UNKNOWN
        self.result.update(result)

    def line(self) -> str:
        took = f"{self.end - self.start:.2f}s" if self.end else "open"
        return (
            f"#{self.id} {self.client} {self.f} on {self.node} {self.args} -> {self.outcome}"
            f" {self.result} ({took})"
        )


class History:
    """Thread-safe; each finished operation is appended to `path` (JSON lines) as it ends."""

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._path = path
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    @contextmanager
    def op(self, client: str, f: str, node: str, **args: Any) -> Iterator[Op]:
        """Record one operation. The body calls `op.ok(...)` or `op.fail(...)`; an exception out
        of the body (a broken connection, a timeout) leaves it `unknown` and is not raised again
        when it is an OSError or a protocol's abort, so workers go on."""
        with self._lock:
            op = Op(len(self._ops), client, f, node, dict(args), time.time())
            self._ops.append(op)
        try:
            yield op
        except Exception as exc:  # the outcome of any failure is "we don't know"
            op.unknown(error=repr(exc)[:200])
        finally:
            op.end = time.time()
            self._write(op)

    def record(self, op: Op) -> None:
        self._write(op)

    def _write(self, op: Op) -> None:
        if self._file is None:
            return
        with self._lock:
            self._file.write(json.dumps(asdict(op), default=str) + "\n")
            self._file.flush()

    def ops(self) -> list[Op]:
        with self._lock:
            return list(self._ops)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    @staticmethod
    def load(path: Path) -> list[Op]:
        """A history written by an earlier run, for the checker or a reader."""
        found: dict[int, Op] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            op = Op(**json.loads(line))
            found[op.id] = op
        return [found[k] for k in sorted(found)]


@dataclass
class Violation:
    rule: str  # "acknowledged-lost", "uid-reused", ...
    detail: str
    at: float  # the time around which the history matters
    ops: list[int] = field(default_factory=list)  # ids of the operations involved


def around(ops: list[Op], violation: Violation, seconds: float = 5.0, limit: int = 40) -> str:
    """The minimal history a reader needs: the operations involved, and the faults and the
    other operations on the same node within `seconds` of the violation."""
    involved = {i for i in violation.ops}
    nodes = {ops[i].node for i in involved if i < len(ops)}
    near = [
        op
        for op in ops
        if op.id in involved
        or (
            abs(op.start - violation.at) <= seconds and (op.client == "nemesis" or op.node in nodes)
        )
    ]
    near.sort(key=lambda op: op.start)
    t0 = near[0].start if near else violation.at
    lines = [f"  +{op.start - t0:7.2f}s {op.line()}" for op in near[:limit]]
    if len(near) > limit:
        lines.append(f"  ... {len(near) - limit} more")
    return "\n".join(lines)
