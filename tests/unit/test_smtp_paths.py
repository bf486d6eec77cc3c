"""LimitedSMTP's fast MAIL/RCPT path parser answers exactly as aiosmtpd's own parser does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailfort.server.admission import ConnectionLimiter
from mailfort.server.listener import Admitted
from mailfort.server.smtp import _PLAIN_PATH, LimitedSMTP


@pytest.fixture(scope="module")
def server() -> Iterator[LimitedSMTP]:
    loop = asyncio.new_event_loop()
    try:
        limiter = ConnectionLimiter(max_total=1, max_per_ip=1)
        admitted = Admitted("192.0.2.1", "192.0.2.0/24", limiter, None, None)
        yield LimitedSMTP(
            object(),  # type: ignore[arg-type]
            admitted=admitted,
            limiter=limiter,
            session_timeout=1.0,
            loop=loop,
        )
    finally:
        loop.close()


ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
ODD = ' ."()[]<>@,;:\\\t\x00\x7fé'  # what the fast path must leave to aiosmtpd
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=6)
locals_ = st.one_of(
    st.lists(atoms, min_size=1, max_size=3).map(".".join),
    st.text(alphabet=ATEXT + ODD, max_size=10),
)
labels = st.text(alphabet="abcXYZ019-_", min_size=1, max_size=6)
domains = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.text(alphabet="abc.-[]019 é", max_size=10),
)
params = st.one_of(
    st.just(""),
    st.tuples(
        st.sampled_from([" ", "  ", "\t", ""]), st.text(alphabet="SIZE=01 BODY8(x)", max_size=12)
    ).map("".join),
)
paths = st.builds(
    lambda lead, local, domain, tail, rest: f"{lead}<{local}@{domain}{tail}{rest}",
    st.sampled_from(["", "", " "]),
    locals_,
    domains,
    st.sampled_from([">", ">", ">", ""]),
    params,
)


@settings(max_examples=3000, deadline=None)
@given(arg=st.one_of(paths, st.text(max_size=20)))
@example(arg="<alice@example.test>")
@example(arg="<alice@example.test> SIZE=1000 BODY=8BITMIME")
@example(arg="<a.b@c.d>\tSMTPUTF8")
@example(arg="<a@b> (comment) SIZE=1")
@example(arg="<a..b@c>")
@example(arg="<a@[127.0.0.1]>")
@example(arg='<"quoted"@example.test>')
@example(arg="<user@exa_mple.test>")
@example(arg="")
def test_same_answer_as_aiosmtpd(server: LimitedSMTP, arg: str) -> None:
    try:
        expected = SMTP._getaddr(server, arg)
    except Exception:
        expected = (None, None)  # aiosmtpd crashes on some malformed paths; we refuse them
    assert server._getaddr(arg) == expected


@pytest.mark.parametrize("arg", ["<", "<@", "<0@", ".@[", "<@[ "])
def test_paths_that_crash_aiosmtpd_are_malformed(server: LimitedSMTP, arg: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any of several
        SMTP._getaddr(server, arg)
    assert server._getaddr(arg) == (None, None)


def test_the_everyday_forms_take_the_fast_path() -> None:
    for arg in ("<alice@example.test>", "<a.b+c@x-y.example> SIZE=5120 BODY=8BITMIME"):
        assert _PLAIN_PATH.match(arg)
    for arg in ('<"a b"@example.test>', "<a@[192.0.2.1]>", "<a@b> (c)", "<ü@example.test>"):
        assert not _PLAIN_PATH.match(arg)


def test_local_part_limit_still_applies(
    server: LimitedSMTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "local_part_limit", 3)
    assert server._getaddr("<abcd@example.test>") == (None, None)
    assert server._getaddr("<abc@example.test>") == ("abc@example.test", "")
