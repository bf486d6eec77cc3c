"""The core's MAIL/RCPT path parser (protocol/smtp/paths.py) answers exactly as aiosmtpd's parser,
which the server used before its own core, did: the address syntax the server takes is unchanged.
(aiosmtpd stays a test dependency: it is the remote MX the delivery tests talk to.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailfort.protocol.smtp.paths import _PLAIN_PATH, parse_params, parse_path

# SMTP._getaddr reads nothing of the server but its local-part limit (unset in mailfort).
AIOSMTPD = SimpleNamespace(local_part_limit=0)


def aiosmtpd_path(arg: str) -> tuple[str | None, str | None]:
    try:
        found: tuple[str | None, str | None] = SMTP._getaddr(AIOSMTPD, arg)  # type: ignore[arg-type]
    except Exception:
        return None, None  # aiosmtpd crashed on some malformed paths; the server refused them
    return found


ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
ODD = ' ."()[]<>@,;:\\\t\x00\x7fé'  # what the fast path must leave to the full parser
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
@example(arg="<>")
@example(arg="<Postmaster>")
@example(arg="")
def test_same_answer_as_aiosmtpd(arg: str) -> None:
    assert parse_path(arg) == aiosmtpd_path(arg)


@pytest.mark.parametrize("arg", ["<", "<@", "<0@", ".@[", "<@[ "])
def test_paths_that_crashed_aiosmtpd_are_malformed(arg: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any of several
        SMTP._getaddr(AIOSMTPD, arg)  # type: ignore[arg-type]
    assert parse_path(arg) == (None, None)


def test_the_everyday_forms_take_the_fast_path() -> None:
    for arg in ("<alice@example.test>", "<a.b+c@x-y.example> SIZE=5120 BODY=8BITMIME"):
        assert _PLAIN_PATH.match(arg)
    for arg in ('<"a b"@example.test>', "<a@[192.0.2.1]>", "<a@b> (c)", "<ü@example.test>"):
        assert not _PLAIN_PATH.match(arg)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], {}),
        (["SIZE=1000", "BODY=8BITMIME"], {"SIZE": "1000", "BODY": "8BITMIME"}),
        (["SMTPUTF8"], {"SMTPUTF8": True}),
        (["SIZE="], None),  # a keyword with "=" needs a value
        (["(X)"], None),  # a keyword is letters and digits (no "-" either, as before)
        (["SIZE=²"], None),  # RFC 1870 4: ASCII digits only
        (["SIZE=" + "9" * 21], None),  # at most 20 of them
        (["SIZE=" + "9" * 20], {"SIZE": "9" * 20}),
    ],
)
def test_parameters(words: list[str], expected: dict[str, str | bool] | None) -> None:
    assert parse_params(words) == expected
