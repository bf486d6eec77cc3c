"""A process's CPU time and resident memory, read from /proc (Linux, proc(5)).

CPU is utime + stime of /proc/PID/stat: every thread of the process, in clock ticks. A server
made of a parent and the processes it forks (PostgreSQL: a backend per connection, the WAL
writer, the checkpointer) is counted as the parent, the children it has reaped (cutime, cstime)
and the children still alive, as benchmarks/cluster.py counts it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


class ProcError(Exception):
    """A process that is gone or a /proc file that does not read as proc(5) says."""


def stat_fields(text: str) -> list[str]:
    """Fields of a /proc/PID/stat line after the command name, which may hold spaces and
    parentheses (hence the last ")"): [0] state, [1] ppid, [11] utime, [12] stime, [13] cutime,
    [14] cstime (fields 3, 4, 14-17 of proc(5))."""
    _, sep, tail = text.rpartition(")")
    fields = tail.split()
    if not sep or len(fields) < 15:
        raise ProcError(f"not a /proc/PID/stat line: {text[:80]!r}")
    return fields


def stat_cpu_seconds(text: str, *, reaped_children: bool = False) -> float:
    """utime + stime (and with `reaped_children` cutime + cstime) of a stat line, in seconds."""
    f = stat_fields(text)
    ticks = int(f[11]) + int(f[12])
    if reaped_children:
        ticks += int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def kilobytes_field(text: str, key: str) -> int | None:
    """The `Key:   N kB` line of a /proc status or meminfo text, in bytes; None without one."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def status_rss_bytes(text: str) -> int:
    """VmRSS of a /proc/PID/status text, in bytes."""
    found = kilobytes_field(text, "VmRSS")
    if found is None:
        raise ProcError("no VmRSS line in /proc/PID/status (a kernel thread, or a zombie)")
    return found


def _read(pid: int, name: str) -> str:
    try:
        return (PROC / str(pid) / name).read_text()
    except OSError as exc:
        raise ProcError(f"process {pid}: cannot read /proc/{pid}/{name}: {exc.strerror}") from None


def schedstat_seconds(text: str) -> float:
    """The time on a CPU of a /proc/PID/task/TID/schedstat line (nanoseconds, first field)."""
    fields = text.split()
    if not fields or not fields[0].isdigit():
        raise ProcError(f"not a schedstat line: {text[:80]!r}")
    return int(fields[0]) / 1e9


@dataclass(frozen=True, slots=True)
class CpuSample:
    """A process's CPU so far, two ways: `threads`, the scheduler's nanosecond count of each
    live thread (schedstat), precise but blind to threads that have ended; `ticks`, utime +
    stime of /proc/PID/stat, every thread that ever ran, in clock ticks (10 ms)."""

    threads: float
    ticks: float


def cpu_sample(pid: int) -> CpuSample:
    ticks = stat_cpu_seconds(_read(pid, "stat"))
    if not (PROC / str(pid) / "task" / str(pid) / "schedstat").exists():
        return CpuSample(ticks, ticks)  # a kernel without schedstat: ticks alone
    total = 0.0
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError as exc:
        raise ProcError(f"process {pid}: cannot list its threads: {exc.strerror}") from None
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += schedstat_seconds((task / "schedstat").read_text())
    return CpuSample(total, ticks)


def cpu_between(before: CpuSample, after: CpuSample) -> float:
    """CPU used between two samples: the precise count, unless threads that ended took time
    with them (the argon2 library runs each hash on threads of its own) and the ticks show
    more than their rounding (a tick at each end) explains."""
    precise = after.threads - before.threads
    ticks = after.ticks - before.ticks
    return ticks if ticks > precise + 2 / CLK_TCK else precise


def cpu_seconds(pid: int) -> float:
    """CPU the process has used so far, every thread of it (to the clock tick)."""
    return stat_cpu_seconds(_read(pid, "stat"))


def rss_bytes(pid: int) -> int:
    return status_rss_bytes(_read(pid, "status"))


def parent_pid(pid: int) -> int:
    return int(stat_fields(_read(pid, "stat"))[1])


def tree_cpu_seconds(parent: int) -> float:
    """CPU of a forking server: the parent, its reaped children and its live children."""
    total = stat_cpu_seconds(_read(parent, "stat"), reaped_children=True)
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ProcError, ValueError):
            fields = stat_fields((entry / "stat").read_text())
            if int(fields[1]) == parent:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total
