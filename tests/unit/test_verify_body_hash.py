"""The streamed body hash for verification equals dkimpy's for every c= body canonicalization,
hash algorithm and l= a signature may name."""

from __future__ import annotations

import base64
import hashlib

import dkim
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.trust.body_hash import body_hash, body_start

HEADER = b"From: a@x.test\r\nSubject: s\r\n\r\n"

pieces = st.lists(
    st.sampled_from([b"a", b"bc", b" ", b"\t", b"\r", b"\n", b"\r\n", b"  \t ", b"x y"]),
    max_size=60,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(
    body=pieces,
    chunk=st.integers(min_value=1, max_value=8),
    relaxed=st.booleans(),
    algorithm=st.sampled_from(["sha256", "sha1"]),
    limit=st.none() | st.integers(min_value=0, max_value=80),
)
def test_it_equals_dkimpys_hash(
    body: bytes, chunk: int, relaxed: bool, algorithm: str, limit: int | None
) -> None:
    message = HEADER + body
    _, parsed = dkim.rfc822_parse(message)
    canonical = (Relaxed if relaxed else Simple).canonicalize_body(parsed)
    if limit is not None:
        canonical = canonical[:limit]
    expected = base64.b64encode(hashlib.new(algorithm, canonical).digest())
    got = body_hash(
        message, body_start(message), relaxed=relaxed, algorithm=algorithm, limit=limit, chunk=chunk
    )
    assert got == expected
