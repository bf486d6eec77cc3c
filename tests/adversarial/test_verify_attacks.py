"""Attacks on the checks of incoming mail: records and signatures a stranger controls.

Each gets the RFC's result (permerror, temperror, neutral, fail) in bounded time, with a bounded
number of DNS questions (counted by the name server), and never a traceback."""

from __future__ import annotations

import base64
import smtplib
import threading
import time
import tracemalloc
from collections.abc import Iterator

import dkim
import pytest

from mailfort.trust.dkim_check import MAX_LARGE_SIGNATURES, MAX_SIGNATURES, check
from mailfort.trust.dns import TrustResolver
from mailfort.trust.headers import fields
from mailfort.trust.incoming import Verifier, VerifySettings
from mailfort.trust.spf import MAX_EXPANSION, Result, check_spf
from tests.dkimkeys import rsa_key
from tests.dnsserver import NameServer, Zone
from tests.trustdns import checking_node, txt

IP = "192.0.2.10"
BODY = b"From: x@evil.test\r\nTo: a@example.test\r\nSubject: s\r\n\r\nbody\r\n"


async def spf(resolver: TrustResolver, domain: str, timeout: float = 10) -> tuple[Result, str]:
    result = await check_spf(resolver, IP, f"x@{domain}", "helo.test", timeout=timeout)
    return result.result, result.reason


def asked(zone: Zone) -> int:
    return len(zone.queries)


async def test_include_loop(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "a.test", "v=spf1 include:b.test -all")
    txt(zone, "b.test", "v=spf1 include:a.test -all")
    assert (await spf(resolver, "a.test"))[0] is Result.PERMERROR
    assert asked(zone) <= 3


async def test_redirect_to_itself(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "loop.test", "v=spf1 redirect=%{d}")
    result, reason = await spf(resolver, "loop.test")
    assert result is Result.PERMERROR and "loop" in reason
    assert asked(zone) <= 2


async def test_deep_include_chain_stops_at_ten_lookups(zone: Zone, resolver: TrustResolver) -> None:
    for i in range(50):
        txt(zone, f"d{i}.test", f"v=spf1 include:d{i + 1}.test -all")
    result, reason = await spf(resolver, "d0.test")
    assert result is Result.PERMERROR and "10 DNS lookups" in reason
    assert asked(zone) <= 12


async def test_wide_record_stops_at_ten_lookups(zone: Zone, resolver: TrustResolver) -> None:
    for i in range(40):
        zone.add(f"w{i}.test", "A", "198.51.100.1")
    txt(zone, "wide.test", "v=spf1 " + " ".join(f"a:w{i}.test" for i in range(40)) + " -all")
    assert (await spf(resolver, "wide.test"))[0] is Result.PERMERROR
    assert asked(zone) <= 11


async def test_many_mx_names(zone: Zone, resolver: TrustResolver) -> None:
    for i in range(30):
        zone.add("mx.test", "MX", f"{i} h{i}.mx.test.")
    txt(zone, "mx.test", "v=spf1 mx -all")
    assert (await spf(resolver, "mx.test"))[0] is Result.PERMERROR
    assert asked(zone) <= 2  # refused before a single address lookup


async def test_many_ptr_names_only_ten_are_looked_at(zone: Zone, resolver: TrustResolver) -> None:
    for i in range(40):
        zone.add("10.2.0.192.in-addr.arpa", "PTR", f"p{i}.ptr.test.")
    txt(zone, "ptr.test", "v=spf1 ptr -all")
    assert (await spf(resolver, "ptr.test"))[0] is Result.FAIL
    assert asked(zone) <= 12


async def test_void_lookups(zone: Zone, resolver: TrustResolver) -> None:
    terms = " ".join(f"a:gone{i}.test" for i in range(9))
    txt(zone, "void.test", f"v=spf1 {terms} -all")
    result, reason = await spf(resolver, "void.test")
    assert result is Result.PERMERROR and "void" in reason
    assert asked(zone) <= 4


async def test_huge_txt_record(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "huge.test", "v=spf1 " + " ".join(f"ip4:198.51.100.{i % 250}" for i in range(2000)))
    assert (await spf(resolver, "huge.test"))[0] is Result.PERMERROR
    txt(zone, "inc-huge.test", "v=spf1 include:huge.test -all")
    assert (await spf(resolver, "inc-huge.test"))[0] is Result.PERMERROR


async def test_macro_explosion(zone: Zone, resolver: TrustResolver) -> None:
    # Each %{s} is the whole sender; a record of them could grow without the bound.
    txt(zone, "macro.test", "v=spf1 exists:" + "%{s}" * 400 + ".x.test -all")
    local = "l" * 60
    started = time.monotonic()
    result = await check_spf(resolver, IP, f"{local}@macro.test", "h.test")
    assert result.result is Result.PERMERROR and "expansion" in result.reason
    assert 400 * (len(local) + len("@macro.test")) > MAX_EXPANSION
    # Huge digit transformers and every delimiter at once: still one short name.
    txt(zone, "digits.test", "v=spf1 exists:%{d99999999999999999r.-+,/_=}.%{i0000000001}.x -all")
    digits = await check_spf(resolver, IP, "a@digits.test", "h.test")
    assert digits.result is Result.FAIL
    assert time.monotonic() - started < 5


async def test_long_expansion_is_cut_to_253(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "cut.test", "v=spf1 exists:%{l}.%{l}.%{l}.%{l}.%{l}.cut.test -all")
    sender = ".".join(["a" * 60] * 2) + "@cut.test"
    result = await check_spf(resolver, IP, sender, "h.test")
    assert result.result is Result.FAIL
    name = zone.queries[-1][0]
    assert len(name.rstrip(".")) <= 253 and name.endswith(".cut.test.")


async def test_name_server_that_never_answers(zone: Zone, resolver: TrustResolver) -> None:
    zone.silent.add("mute.test")
    started = time.monotonic()
    assert (await spf(resolver, "mute.test"))[0] is Result.TEMPERROR
    txt(zone, "inc-mute.test", "v=spf1 include:mute.test -all")
    assert (await spf(resolver, "inc-mute.test"))[0] is Result.TEMPERROR
    assert time.monotonic() - started < 5  # two 1-s timeouts (the second is not cached)


async def test_nothing_listening_at_all() -> None:
    resolver = TrustResolver(nameservers=[("127.0.0.1", 9)], timeout=0.5)
    started = time.monotonic()
    result = await check_spf(resolver, IP, "x@any.test", "h.test")
    assert result.result is Result.TEMPERROR
    verdict = await Verifier(resolver, authserv_id="mx.test").check(
        ip=IP, helo="h.test", sender="x@any.test", message=BODY
    )
    assert verdict.dmarc.result == "temperror"
    assert time.monotonic() - started < 5


# Serial (tests/conftest.py): judges a 0.5-s deadline to within 1.5 s.
@pytest.mark.serial
async def test_whole_evaluation_has_a_deadline(zone: Zone, resolver: TrustResolver) -> None:
    # Every lookup is slow but answered in time alone; the whole check is not.
    for i in range(8):
        zone.silent.add(f"s{i}.slow.test")
    txt(zone, "slow.test", "v=spf1 " + " ".join(f"a:s{i}.slow.test" for i in range(8)) + " -all")
    started = time.monotonic()
    result = await check_spf(resolver, IP, "x@slow.test", "h.test", timeout=0.5)
    assert result.result is Result.TEMPERROR
    assert time.monotonic() - started < 2


def signature(**tags: str) -> bytes:
    value = "; ".join(f"{k}={v}" for k, v in tags.items())
    return f"DKIM-Signature: {value}\r\n".encode()


GARBAGE = [
    b"DKIM-Signature: \r\n",
    b"DKIM-Signature: ;;;===;;\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha999; d=evil.test; s=s; h=from; bh=AA==; b=AA==\r\n",
    signature(v="1", a="rsa-sha256", d="evil.test", s="s", h="from", bh="!!!", b="???"),
    signature(v="1", a="rsa-sha256", d="evil..test", s="s", h="from", bh="AA==", b="AA=="),
    signature(v="1", a="rsa-sha256", d="evil.test", s="../../x", h="from", bh="AA==", b="AA=="),
    signature(v="1", a="rsa-sha256", d="evil.test", s="s", bh="AA==", b="AA=="),  # no h=
    signature(v="1", a="rsa-sha256", d="evil.test", d2="x", s="s", h="from", l="-5", b="AA=="),
    b"DKIM-Signature: v=1; v=1; d=evil.test; d=x.test; s=s; h=from; bh=AA==; b=AA==\r\n",
    b"DKIM-Signature: v=1; d=\xff\xfe.test; s=\x00; h=from; bh=AA==; b=AA==\r\n",
]


@pytest.mark.parametrize("header", GARBAGE)
async def test_malformed_dkim_signatures(
    zone: Zone, resolver: TrustResolver, header: bytes
) -> None:
    message = header + BODY
    checked = await check(resolver, message, fields(message))
    assert [s.result for s in checked.dkim] == ["permerror"]
    assert asked(zone) <= 1


async def test_huge_b_tag(zone: Zone, resolver: TrustResolver) -> None:
    key = rsa_key("evil.test", "s")
    key.publish(zone)
    signed = key.sign(BODY)
    huge = base64.b64encode(b"\x01" * 90_000).decode()
    start = signed.index(b" b=") + 3
    end = signed.index(b"\r\n", signed.index(b"\r\n\r\n") - 400)
    forged = signed[:start] + huge.encode() + signed[end:]
    started = time.monotonic()
    checked = await check(resolver, forged, fields(forged))
    assert [s.result for s in checked.dkim] in (["fail"], ["permerror"])
    assert time.monotonic() - started < 5


async def test_a_hundred_signatures(zone: Zone, resolver: TrustResolver) -> None:
    key = rsa_key("evil.test", "s")
    key.publish(zone)
    headers = b"".join(
        signature(
            v="1", a="rsa-sha256", d=f"d{i}.evil.test", s=f"s{i}", h="from", bh="AA==", b="AA=="
        )
        for i in range(100)
    )
    message = headers + key.sign(BODY)
    started = time.monotonic()
    checked = await check(resolver, message, fields(message))
    assert len(checked.dkim) == MAX_SIGNATURES
    assert asked(zone) <= MAX_SIGNATURES
    assert time.monotonic() - started < 5


def relaxed_signed(key_domain: str, zone: Zone, size: int, copies: int) -> bytes:
    """A message of about `size` octets whose body is hashed the slow way (relaxed), signed
    `copies` times by the same valid signature."""
    key = rsa_key(key_domain, "s")
    key.publish(zone)
    line = b"w \t " * 7 + b"x\r\n"  # runs of white space: every one is a regex match
    body = BODY + line * (size // len(line))
    signature = dkim.sign(
        body, b"s", key_domain.encode(), key.private, canonicalize=(b"relaxed", b"relaxed")
    )
    return signature * copies + body


async def test_large_message_is_verified_in_bounded_memory(
    zone: Zone, resolver: TrustResolver
) -> None:
    # dkimpy's own canonicalization of this body would peak at ~40 times its size.
    message = relaxed_signed("evil.test", zone, 4_000_000, copies=5)
    header = fields(message)
    tracemalloc.start()
    try:
        checked = await check(resolver, message, header)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Each kind of body hash reads the whole body again: only the first two are checked.
    assert [s.result for s in checked.dkim] == ["pass"] * MAX_LARGE_SIGNATURES
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.0f} MB"


async def test_overlong_arc_chain_is_fail_unchecked(zone: Zone, resolver: TrustResolver) -> None:
    sets = b"".join(
        f"ARC-Seal: i={i}; a=rsa-sha256; cv=pass; d=evil.test; s=s{i}; b=AA==\r\n"
        f"ARC-Message-Signature: i={i}; a=rsa-sha256; d=evil.test; s=s{i}; h=from; bh=AA==;"
        f" b=AA==\r\n".encode()
        for i in range(1, 61)
    )
    message = sets + BODY
    checked = await check(resolver, message, fields(message))
    assert checked.arc == "fail"
    assert asked(zone) == 0


async def test_garbage_arc_headers_fail(zone: Zone, resolver: TrustResolver) -> None:
    message = b"ARC-Seal: i=zz; cv=maybe\r\nARC-Message-Signature: ;;;\r\n" + BODY
    checked = await check(resolver, message, fields(message))
    assert checked.arc == "fail"


# -- against a node ------------------------------------------------------------------------------
USERS = {"a@example.test": "pw-unused-here"}


@pytest.fixture(scope="module")
def hostile_dns() -> Iterator[NameServer]:
    zone = Zone()
    txt(zone, "evil.test", "v=spf1 " + " ".join(f"include:e{i}.evil.test" for i in range(30)))
    for i in range(30):
        txt(zone, f"e{i}.evil.test", f"v=spf1 include:evil.test a:x{i}.evil.test")
    txt(zone, "_dmarc.evil.test", "v=DMARC1; p=reject")
    server = NameServer(zone).start()
    yield server
    server.stop()


def test_node_answers_hostile_mail_in_bounded_time(
    tmp_path_factory: pytest.TempPathFactory, hostile_dns: NameServer
) -> None:
    node = checking_node(tmp_path_factory.mktemp("verify-attack"), hostile_dns, USERS)
    try:
        headers = b"".join(GARBAGE) + b"".join(
            signature(
                v="1", a="rsa-sha256", d=f"d{i}.evil.test", s="s", h="from", bh="AA==", b="AA=="
            )
            for i in range(100)
        )
        for _ in range(3):
            before = len(hostile_dns.zone.queries)
            started = time.monotonic()
            with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
                code, _ = client.ehlo("evil.test")
                client.mail("x@evil.test")
                client.rcpt("a@example.test")
                code, reply = client.data(headers + BODY)
            assert time.monotonic() - started < 10
            # SPF permerror (loop and lookup limit), DKIM garbage: DMARC fails, p=reject.
            assert (code, reply[:5]) == (550, b"5.7.1")
            assert len(hostile_dns.zone.queries) - before <= 30
        assert "Traceback" not in node.log()
    finally:
        node.stop()


# Serial (tests/conftest.py): judges the node's latency (0.5 s) while it hashes 50 MB.
@pytest.mark.serial
def test_huge_relaxed_message_does_not_stall_the_node(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # dkimpy's relaxed body canonicalization holds the interpreter lock for its whole regex:
    # a 10 MB body stopped the node's event loop for 0.65 s; hashed in pieces it does not, and
    # another session keeps being answered at once.
    zone = Zone()
    message = relaxed_signed("big.test", zone, 10_000_000, copies=5)
    txt(zone, "big.test", "v=spf1 -all")
    dns = NameServer(zone).start()
    node = checking_node(tmp_path_factory.mktemp("verify-big"), dns, USERS)
    replies: list[tuple[int, bytes]] = []

    def send_big() -> None:
        with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=60) as client:
            client.ehlo("big.test")
            client.mail("x@big.test")
            client.rcpt("a@example.test")
            replies.append(client.data(message))

    try:
        sender = threading.Thread(target=send_big)
        sender.start()
        slowest = 0.0
        while sender.is_alive():
            # A new session each time (a session's NOOPs are limited): greeting and EHLO.
            started = time.monotonic()
            with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as other:
                assert other.ehlo("other.test")[0] == 250
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)
        sender.join()
        assert replies and replies[0][0] == 250
        assert slowest < 0.5, f"a session waited {slowest:.2f} s for its EHLO"
        (stored,) = node.inbox("a@example.test")
        assert stored.count(b"dkim=pass") == MAX_LARGE_SIGNATURES
        assert "Traceback" not in node.log()
    finally:
        node.stop()
        dns.stop()


# Serial (tests/conftest.py): judges a 1.5-s deadline to within 1 s.
@pytest.mark.serial
async def test_dmarc_lookups_have_one_deadline(zone: Zone, resolver: TrustResolver) -> None:
    # Five author domains whose name servers never answer: five 1-s timeouts, cut at 1.5 s.
    for i in range(5):
        zone.silent.add(f"_dmarc.mute{i}.test")
    header = "From: " + ", ".join(f"x@mute{i}.test" for i in range(5)) + "\r\n"
    verifier = Verifier(resolver, authserv_id="mx.test", settings=VerifySettings(dmarc_timeout=1.5))
    started = time.monotonic()
    verdict = await verifier.check(
        ip=IP, helo="h.test", sender="", message=header.encode() + b"\r\nbody\r\n"
    )
    assert verdict.dmarc.result == "temperror"
    assert time.monotonic() - started < 2.5
