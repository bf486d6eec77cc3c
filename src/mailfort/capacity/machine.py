"""The machine a profile is measured on, from /proc/cpuinfo, /proc/meminfo and uname."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from mailfort.capacity.procstat import kilobytes_field
from mailfort.capacity.profile import Machine


def cpu_model(cpuinfo: str) -> str:
    """The first "model name" of /proc/cpuinfo (x86), else "Model"/"Hardware" (ARM), else ""."""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in ("model name", "model", "hardware", "cpu") and key not in found:
            found[key] = " ".join(value.split())
    for key in ("model name", "hardware", "cpu", "model"):
        if found.get(key):
            return found[key]
    return ""


def memory_bytes(meminfo: str) -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    found = kilobytes_field(meminfo, "MemTotal")
    if found is None:
        raise ValueError("no MemTotal line in /proc/meminfo")
    return found


def logical_cpus() -> int:
    """CPUs this process may run on (its affinity: a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average(proc: Path = Path("/proc")) -> float:
    """The 1-minute load average (runnable tasks): other work competing for the CPUs."""
    try:
        return float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def describe(proc: Path = Path("/proc")) -> Machine:
    """This machine, as a profile names it."""
    try:
        model = cpu_model((proc / "cpuinfo").read_text())
    except OSError:
        model = ""
    uname = platform.uname()
    return Machine(
        hostname=socket.gethostname(),
        cpu_model=model or uname.processor or uname.machine or "unknown",
        cpus=logical_cpus(),
        memory_bytes=memory_bytes((proc / "meminfo").read_text()),
        kernel=f"{uname.system} {uname.release} {uname.machine}",
        python=f"{platform.python_implementation()} {platform.python_version()}",
    )
