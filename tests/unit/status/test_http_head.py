"""The bounds on an HTTP request head, as bytes arrive (`HeadMeter`) and once parsed (`refusal`).
Fuzzed with hypothesis against a reference that looks at the whole head at once: however the
bytes are cut into reads, the verdict is the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.status.web.head import (
    HEAD_TOO_LARGE,
    MAX_HEAD,
    MAX_TARGET,
    URI_TOO_LONG,
    HeadMeter,
    refusal,
)


def fed(meter: HeadMeter, chunks: list[bytes]) -> int:
    for chunk in chunks:
        verdict = meter.feed(chunk)
        if verdict:
            return verdict
    return 0


def reference(data: bytes, max_head: int, max_line: int) -> int:
    """The verdict on `data` seen whole: 0 (within bounds, complete or not yet), 414 or 431."""
    newline = data.find(b"\n")
    if (newline < 0 and len(data) > max_line) or newline + 1 > max_line:
        return URI_TOO_LONG
    ends = [(i, len(e)) for e in (b"\n\r\n", b"\n\n") if (i := data.find(e)) >= 0]
    if ends:
        at, size = min(ends)
        return HEAD_TOO_LARGE if at + size > max_head else 0
    return HEAD_TOO_LARGE if len(data) > max_head else 0


def head(target: str = "/", *fields: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: status.example", *fields, "", ""]
    return "\r\n".join(lines).encode()


def test_a_head_within_bounds_passes_and_later_bytes_are_not_counted() -> None:
    meter = HeadMeter()
    data = head("/", "X-Fill: " + "a" * (MAX_HEAD - 100))
    assert len(data) < MAX_HEAD
    assert fed(meter, [data[:10], data[10:5000], data[5000:]]) == 0
    assert meter.complete and meter.seen == len(data)
    assert meter.feed(b"x" * 100_000) == 0  # a body, not the head


def test_a_large_header_is_431_however_it_arrives() -> None:
    data = head("/", "X-Big: " + "a" * 60_000)
    assert fed(HeadMeter(), [data]) == HEAD_TOO_LARGE
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    meter = HeadMeter()
    assert fed(meter, chunks) == HEAD_TOO_LARGE
    assert meter.seen <= MAX_HEAD + 1000, "refused as soon as the bound was passed"


def test_a_long_request_line_is_414() -> None:
    data = head("/" + "x" * 100_000)
    assert fed(HeadMeter(), [data]) == URI_TOO_LONG
    assert fed(HeadMeter(), [data[:9000]]) == URI_TOO_LONG  # no line end yet, already too long
    assert fed(HeadMeter(), [head("/" + "x" * (MAX_TARGET - 10))]) == 0


def test_many_small_headers_count_like_one_large_one() -> None:
    fields = [f"X-F{n}: {'v' * 90}" for n in range(200)]
    assert fed(HeadMeter(), [head("/", *fields)]) == HEAD_TOO_LARGE


def test_parsed_requests_are_measured_too() -> None:
    ok = [(b"host", b"status.example"), (b"accept", b"*/*")]
    assert refusal("GET", b"/", ok) == 0
    assert refusal("GET", b"/" + b"x" * MAX_TARGET, ok) == URI_TOO_LONG
    assert refusal("GET", b"/", [*ok, (b"x-big", b"a" * MAX_HEAD)]) == HEAD_TOO_LARGE
    many = [(b"x-f%d" % n, b"v" * 100) for n in range(200)]
    assert refusal("GET", b"/", many) == HEAD_TOO_LARGE


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"a", b"bb", b"\r", b"\n", b"\r\n", b"GET / HTTP/1.1", b"X: y", b"zzzz"]),
        max_size=60,
    ),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20),
)
def test_the_verdict_does_not_depend_on_how_bytes_are_cut(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    chunks, at, i = [], 0, 0
    while at < len(data):
        size = cuts[i % len(cuts)]
        chunks.append(data[at : at + size])
        at, i = at + size, i + 1
    verdict = fed(HeadMeter(max_head=64, max_line=32), chunks)
    assert verdict == reference(data, 64, 32), (data, chunks)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_any_bytes_in_any_reads_get_a_verdict_never_a_crash(data: bytes, step: int) -> None:
    meter = HeadMeter(max_head=128, max_line=64)
    verdict = fed(meter, [data[i : i + step] for i in range(0, len(data), step)])
    assert verdict == reference(data, 128, 64)
