"""What `capacity measure` reads from /proc, from /metrics and writes into a cgroup."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest

from mailfort.capacity import machine, procstat, promtext
from mailfort.capacity.cgroup import CgroupError, CpuQuota

TICK = 1 / procstat.CLK_TCK
# A command name with spaces and a ")" of its own: the fields start after the last ")".
STAT = (
    "4242 (my (odd) name) S 1 4242 4242 0 -1 4194304 500 0 0 0 250 50 7 3 20 0 5 0 100 "
    + " ".join(["0"] * 30)
)


def test_stat_fields_start_after_the_last_parenthesis() -> None:
    fields = procstat.stat_fields(STAT)
    assert fields[0] == "S" and fields[1] == "1"
    assert procstat.stat_cpu_seconds(STAT) == pytest.approx(300 * TICK)
    assert procstat.stat_cpu_seconds(STAT, reaped_children=True) == pytest.approx(310 * TICK)


@pytest.mark.parametrize("text", ["", "4242 (x) S 1 2", "no parenthesis at all " * 5])
def test_a_line_that_is_not_stat_is_refused(text: str) -> None:
    with pytest.raises(procstat.ProcError):
        procstat.stat_fields(text)


def test_rss_is_read_in_bytes_from_status() -> None:
    status = "Name:\tpython\nVmPeak:\t  900 kB\nVmRSS:\t  12345 kB\nThreads:\t3\n"
    assert procstat.status_rss_bytes(status) == 12345 * 1024
    with pytest.raises(procstat.ProcError):
        procstat.status_rss_bytes("Name:\tkthreadd\nThreads:\t1\n")


def test_schedstat_is_nanoseconds() -> None:
    assert procstat.schedstat_seconds("1500000000 2000 31\n") == 1.5
    with pytest.raises(procstat.ProcError):
        procstat.schedstat_seconds("")


def test_this_process_cpu_grows_with_work() -> None:
    before, sample = procstat.cpu_seconds(os.getpid()), procstat.cpu_sample(os.getpid())
    sum(i * i for i in range(3_000_000))
    assert procstat.cpu_seconds(os.getpid()) > before
    assert procstat.cpu_between(sample, procstat.cpu_sample(os.getpid())) > 0
    assert procstat.rss_bytes(os.getpid()) > 1 << 20
    assert procstat.parent_pid(os.getpid()) == os.getppid()


def test_threads_that_ended_are_counted_from_the_ticks() -> None:
    tick = 1 / procstat.CLK_TCK
    before = procstat.CpuSample(threads=1.0, ticks=1.0)
    # Live threads only: the precise count stands within the ticks' rounding.
    assert procstat.cpu_between(before, procstat.CpuSample(1.0123, 1.0 + tick)) == pytest.approx(
        0.0123
    )
    # A thread that ran 0.5 s and ended: only the ticks still show it.
    assert procstat.cpu_between(before, procstat.CpuSample(1.01, 1.51)) == pytest.approx(0.51)


def test_a_process_that_is_gone_is_one_error() -> None:
    with pytest.raises(procstat.ProcError, match="process 999999999"):
        procstat.rss_bytes(999_999_999)


CPUINFO_X86 = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 49\nmodel name\t: AMD EPYC  7B12\n"
)
CPUINFO_ARM = (
    "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\nHardware\t: BCM2835\n"
    "Model\t: Raspberry Pi 4\n"
)


def test_cpu_model_from_cpuinfo() -> None:
    assert machine.cpu_model(CPUINFO_X86) == "AMD EPYC 7B12"
    assert machine.cpu_model(CPUINFO_ARM) == "BCM2835"
    assert machine.cpu_model("") == ""


def test_memory_from_meminfo() -> None:
    assert machine.memory_bytes("MemTotal:       24683772 kB\nMemFree: 1 kB\n") == 24683772 * 1024
    with pytest.raises(ValueError):
        machine.memory_bytes("MemFree: 1 kB\n")


def test_the_machine_is_this_one() -> None:
    m = machine.describe()
    assert m.hostname == socket.gethostname()
    assert m.cpus == len(os.sched_getaffinity(0))
    assert m.memory_bytes > 1 << 20
    assert m.kernel.startswith(os.uname().sysname) and os.uname().release in m.kernel


METRICS = """\
# HELP mailfort_store_commit_duration_seconds Time for a durable store commit
# TYPE mailfort_store_commit_duration_seconds histogram
mailfort_store_commit_duration_seconds_bucket{le="0.001"} 10.0
mailfort_store_commit_duration_seconds_bucket{le="0.01"} 90.0
mailfort_store_commit_duration_seconds_bucket{le="0.1"} 100.0
mailfort_store_commit_duration_seconds_bucket{le="+Inf"} 100.0
mailfort_store_commit_duration_seconds_count 100.0
mailfort_store_commit_duration_seconds_sum 0.5
# HELP mailfort_messages_accepted Messages answered with 250
# TYPE mailfort_messages_accepted counter
mailfort_messages_accepted_total{listener="smtp"} 7.0
mailfort_messages_accepted_total{listener="submission"} 3.0
# HELP mailfort_concurrency_limit Current adaptive admission limit
# TYPE mailfort_concurrency_limit gauge
mailfort_concurrency_limit{scope="store"} 48.0
"""


def test_samples_by_name_and_labels() -> None:
    scrape = promtext.parse(METRICS)
    assert scrape.value("mailfort_concurrency_limit", scope="store") == 48
    assert scrape.value("mailfort_concurrency_limit", scope="sessions") is None
    assert scrape.total("mailfort_messages_accepted_total") == 10
    assert scrape.total("mailfort_messages_accepted_total", listener="smtp") == 7
    assert scrape.total("no_such_metric") is None
    buckets = scrape.buckets("mailfort_store_commit_duration_seconds")
    assert buckets[0] == (0.001, 10.0) and math.isinf(buckets[-1][0])


def test_quantiles_interpolate_within_the_bucket() -> None:
    buckets = promtext.parse(METRICS).buckets("mailfort_store_commit_duration_seconds")
    # Rank 50 of 100 lies in (0.001, 0.01], 40 of its 80: halfway.
    assert promtext.quantile(0.5, buckets) == pytest.approx(0.0055)
    # Rank 5 in the first bucket, whose lower bound is 0.
    assert promtext.quantile(0.05, buckets) == pytest.approx(0.0005)
    assert promtext.quantile(0.99, buckets) == pytest.approx(0.091)
    assert promtext.quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    with pytest.raises(ValueError):
        promtext.quantile(1.5, buckets)


def test_a_quantile_in_the_inf_bucket_is_the_highest_bound() -> None:
    assert promtext.quantile(0.99, [(0.1, 50.0), (math.inf, 100.0)]) == 0.1


def test_the_delta_of_two_readings_is_what_happened_between() -> None:
    before = [(0.01, 5.0), (0.1, 10.0), (math.inf, 10.0)]
    after = [(0.01, 5.0), (0.1, 30.0), (math.inf, 30.0)]
    delta = promtext.bucket_delta(before, after)
    assert delta == [(0.01, 0.0), (0.1, 20.0), (math.inf, 20.0)]
    assert promtext.quantile(0.5, delta) == pytest.approx(0.055)


def test_text_that_is_not_the_exposition_format_is_refused() -> None:
    with pytest.raises(promtext.ScrapeError):
        promtext.parse("this is {not metrics\n")
    with pytest.raises(promtext.ScrapeError, match="not an http"):
        promtext.scrape("file:///etc/passwd")


def fake_cgroup_v1(root: Path) -> Path:
    cpu = root / "cpu"
    cpu.mkdir(parents=True)
    for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us", "cgroup.procs"):
        (cpu / name).write_text("")
    return cpu


def test_a_quota_is_written_as_cfs_quota_and_period(tmp_path: Path) -> None:
    cpu = fake_cgroup_v1(tmp_path)
    quota = CpuQuota(0.4, name="g", root=tmp_path)
    assert (cpu / "g" / "cpu.cfs_quota_us").read_text() == "40000\n"
    assert (cpu / "g" / "cpu.cfs_period_us").read_text() == "100000\n"
    quota.add(1234)
    assert (cpu / "g" / "cgroup.procs").read_text() == "1234\n"
    (cpu / "g" / "cpu.stat").write_text(
        "nr_periods 10\nnr_throttled 2\nthrottled_time 1500000000\n"
    )
    assert quota.throttled_seconds() == 1.5


def test_no_cpu_controller_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup cpu controller"):
        CpuQuota(0.5, root=tmp_path)
    with pytest.raises(CgroupError, match="must be > 0"):
        CpuQuota(0.0, root=tmp_path)


def test_repeated_runs_give_the_median_of_each_figure() -> None:
    from dataclasses import replace

    from mailfort.capacity.measure import median_profile
    from mailfort.capacity.profile import profile_from_dict
    from tests.capacity_support import PROFILE

    base = profile_from_dict(PROFILE)
    runs = [
        replace(base, imap_login_cpu=x, notes=("same", f"load {x}")) for x in (0.003, 0.001, 0.002)
    ]
    median = median_profile(runs)
    assert median.imap_login_cpu == 0.002
    assert median.accept[0].cpu_seconds == base.accept[0].cpu_seconds
    assert median.notes.count("same") == 1
    assert "run 2: load 0.001" in median.notes


CPU_V1 = Path("/sys/fs/cgroup/cpu")


@pytest.mark.skipif(
    not (CPU_V1 / "cpu.cfs_quota_us").exists() or not os.access(CPU_V1, os.W_OK),
    reason="needs a writable cgroup v1 cpu controller (root)",
)
def test_a_real_quota_holds_a_busy_process_to_its_share() -> None:
    import subprocess
    import sys
    import time

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with CpuQuota(0.2, name=f"mailfort-test-{os.getpid()}") as quota:
            quota.add(busy.pid)
            before, t0 = procstat.cpu_seconds(busy.pid), time.monotonic()
            time.sleep(1.0)
            share = (procstat.cpu_seconds(busy.pid) - before) / (time.monotonic() - t0)
            # Never more than its quota (a loaded machine may give it less); unbounded, a busy
            # loop takes a whole CPU.
            assert share < 0.3
            assert quota.throttled_seconds() > 0
            path = quota.path
    finally:
        busy.kill()
        busy.wait()
    assert not path.exists()
