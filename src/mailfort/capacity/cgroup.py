"""A CPU quota for one process through a cgroup (the v1 `cpu` controller, or cgroup v2).

`mailfort capacity measure --cpu-quota 0.4` measures a node that may use 40 % of one CPU, as
a planned node with a known CPU share would (the CFS bandwidth controller: `quota` microseconds
of CPU per `period`, kernel Documentation/scheduler/sched-bwc.rst). Needs root, or a delegated
cgroup; without either the error says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the kernel's default CFS period


class CgroupError(Exception):
    """Cgroups cannot give the quota here; the message says why."""


class CpuQuota:
    """A new cgroup with `fraction` of one CPU; `add(pid)` moves a process into it, `remove()`
    moves what is left back to the parent and deletes the group."""

    def __init__(self, fraction: float, *, name: str = "", root: Path = ROOT) -> None:
        if not (fraction > 0 and fraction < 1024):
            raise CgroupError(f"CPU quota {fraction} must be > 0 (a share of one CPU)")
        self.fraction = fraction
        name = name or f"mailfort-measure-{os.getpid()}"
        v1 = root / "cpu"
        if (v1 / "cpu.cfs_quota_us").exists():
            self.v2, self.parent = False, v1
        elif (root / "cgroup.controllers").exists() and "cpu" in (
            (root / "cgroup.controllers").read_text().split()
        ):
            self.v2, self.parent = True, root
        else:
            raise CgroupError(f"no cgroup cpu controller under {root} (cgroup v1 cpu or v2)")
        self.path = self.parent / name
        quota = max(1000, round(fraction * PERIOD_US))
        try:
            self.path.mkdir(exist_ok=True)
            if self.v2:
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
            else:
                (self.path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
                (self.path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.rmdir()
            raise CgroupError(
                f"cannot create cgroup {self.path}: {exc.strerror} (needs root or a delegated"
                " cgroup)"
            ) from None

    def add(self, pid: int) -> None:
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except OSError as exc:
            raise CgroupError(
                f"cannot move process {pid} into {self.path}: {exc.strerror}"
            ) from None

    def throttled_seconds(self) -> float:
        """How long the group's processes waited for the quota so far (cpu.stat)."""
        with contextlib.suppress(OSError):
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "throttled_time":  # v1, nanoseconds
                    return int(value) / 1e9
                if key == "throttled_usec":  # v2
                    return int(value) / 1e6
        return 0.0

    def remove(self) -> None:
        """Move any process still inside back to the parent, then delete the group."""
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.parent / "cgroup.procs").write_text(f"{pid}\n")
        for _ in range(50):  # the kernel refuses rmdir until the last task has left
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)

    def __enter__(self) -> CpuQuota:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
