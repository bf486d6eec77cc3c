#!/usr/bin/env python3
"""DKIM signing cost per outgoing message: RSA 2048, Ed25519, both (the default), and dkimpy's
pure-Python RSA for comparison, on messages of 5 KB and 100 KB.

Each case signs the same message N times in this process with `trust.dkim_sign.sign` (what the
delivery worker runs, in a thread, for each message it sends) and reports messages per second,
CPU milliseconds per message (process time), the latency of one signing call (p50, p99), and the
peak memory one signing call allocates (tracemalloc, measured in a separate pass of at most 20
calls, since tracing slows everything down). The "dkimpy RSA" row signs with dkimpy's own
`dkim.sign`, whose RSA is pure Python: the reason `trust/dkim_sign.py` does the RSA step through
OpenSSL.

    .venv/bin/python benchmarks/dkim_sign.py            # N=500
    .venv/bin/python benchmarks/dkim_sign.py -n 50      # quick
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable

import dkim

from mailfort.store.records import DkimState
from mailfort.trust.dkim_keys import generate
from mailfort.trust.dkim_sign import CANONICALIZATION, SigningKey, header_names, sign, to_sign

SIZES = {"5 KB": 5 * 1024, "100 KB": 100 * 1024}


def message(size: int) -> bytes:
    head = (
        b"Received: from client.example (client.example [192.0.2.1]) by mx.example.test\r\n"
        b"From: Alice Example <alice@example.test>\r\nTo: Bob <bob@remote.test>\r\n"
        b"Subject: the quarterly report\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
        b"Message-ID: <report-1@example.test>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = b"The figures for the quarter are in the attached table, as discussed.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def cases() -> dict[str, Callable[[bytes], bytes]]:
    rsa = SigningKey.load(generate("example.test", "br", "rsa-sha256", DkimState.ACTIVE))
    ed = SigningKey.load(generate("example.test", "be", "ed25519-sha256", DkimState.ACTIVE))

    def pure_python_rsa(msg: bytes) -> bytes:
        include = to_sign(header_names(msg))
        return bytes(
            dkim.sign(
                msg,
                b"br",
                b"example.test",
                rsa.private,
                canonicalize=CANONICALIZATION,
                include_headers=include,
            )
        )

    return {
        "RSA 2048": lambda msg: sign(msg, [rsa]),
        "Ed25519": lambda msg: sign(msg, [ed]),
        "both (default)": lambda msg: sign(msg, [rsa, ed]),
        "dkimpy RSA (pure Python)": pure_python_rsa,
    }


def measure(fn: Callable[[bytes], bytes], msg: bytes, n: int) -> dict[str, float]:
    assert fn(msg)  # warm up, and make sure it signs
    latencies = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        fn(msg)
        latencies.append(time.perf_counter() - t)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    latencies.sort()
    tracemalloc.start()
    peak = 0
    for _ in range(min(n, 20)):
        tracemalloc.reset_peak()
        fn(msg)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    return {
        "msg/s": n / wall,
        "cpu ms/msg": cpu / n * 1000,
        "p50 ms": statistics.median(latencies) * 1000,
        "p99 ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "peak KB": peak / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="signatures per case (default 500)")
    args = parser.parse_args()
    columns = ("msg/s", "cpu ms/msg", "p50 ms", "p99 ms", "peak KB")
    print(f"{'case':<26}{'size':>8}" + "".join(f"{c:>12}" for c in columns))
    for name, fn in cases().items():
        for label, size in SIZES.items():
            row = measure(fn, message(size), args.n)
            cells = "".join(f"{row[c]:>12.2f}" for c in columns)
            print(f"{name:<26}{label:>8}{cells}", flush=True)


if __name__ == "__main__":
    main()
