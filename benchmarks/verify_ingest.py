#!/usr/bin/env python3
"""Ingest with the checks of incoming mail on vs off: what SPF + DKIM + DMARC cost per message.

Runs benchmarks/smtp_ingest.py twice, each against a node of its own: once with `[verify]` off,
once with it on (DKIM-signed messages from a domain whose SPF, DKIM and DMARC p=reject records a
loopback name server holds; the node's resolver caches them after the first message). Every other
option is passed through. It prints each run's table, then the medians side by side: msg/s, the
node's CPU ms per message, p50/p99 latency, and the node's peak RSS. It never asserts speed.

    .venv/bin/python benchmarks/verify_ingest.py                      # smtp_ingest's defaults
    .venv/bin/python benchmarks/verify_ingest.py -n 200 -r 1 --warmup 20 -c 4   # a quick look
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import smtp_ingest  # noqa: E402

ROWS = (
    ("msg/s", "msg_per_s", 1.0, "{:.0f}"),
    ("node CPU ms/msg", "node_cpu_s_per_1000", 1.0, "{:.2f}"),
    ("p50 ms", "p50_ms", 1.0, "{:.1f}"),
    ("p99 ms", "p99_ms", 1.0, "{:.1f}"),
    ("node peak RSS MB", "node_peak_rss_mb", 1.0, "{:.0f}"),
    ("errors", "errors", 1.0, "{:.0f}"),
)


def main(argv: list[str]) -> int:
    if "--host" in argv or "--verify" in argv:
        print("verify_ingest starts its own nodes; --host and --verify are not for it")
        return 2
    medians = {}
    status = 0
    with tempfile.TemporaryDirectory(prefix="verify-ingest-") as tmp:
        for label, extra in (("off", []), ("on", ["--verify"])):
            out = Path(tmp) / f"{label}.json"
            print(f"\n=== verification {label} ===", flush=True)
            status |= smtp_ingest.main([*argv, *extra, "--json", str(out)])
            medians[label] = json.loads(out.read_text())["median"]
    print("\nmedians            off        on     on/off")
    for name, key, scale, spec in ROWS:
        off, on = medians["off"][key] * scale, medians["on"][key] * scale
        ratio = f"{on / off:.2f}" if off else "-"
        print(f"{name:<16} {spec.format(off):>8}  {spec.format(on):>8}  {ratio:>8}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
