"""Where a webhook may point: every spelling of a non-public address is refused, by its syntax or
by the addresses it resolves to (the system resolver for numbers and localhost, a seam for names).
Fuzzed with hypothesis: any text gives a Target or BadUrl, never another error, and any spelling
of any IPv4 address is allowed exactly when it is public and spelled canonically."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfort.status.webhook_url import (
    BadUrl,
    Refused,
    Target,
    is_public,
    parse,
    resolve,
    system_resolver,
)

NAMES = {
    "hooks.example.net": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "internal.example.net": ["10.0.0.5"],
    "mixed.example.net": ["93.184.216.34", "192.168.1.1"],
    "rebind.example.net": ["169.254.169.254"],  # a cloud metadata service
    "six.example.net": ["::1"],
    "mapped.example.net": ["::ffff:127.0.0.1"],
}


async def names(host: str, port: int) -> list[str]:
    """The resolver seam: a fixed zone, and the system resolver for what it does not hold."""
    if host in NAMES:
        return NAMES[host]
    return await system_resolver(host, port)


def check(url: str, *, allow_private: bool = False) -> str:
    """ "ok", "bad" (syntax) or "refused" (not public), as the subscription check decides."""
    try:
        target = parse(url)
    except BadUrl:
        return "bad"
    try:
        asyncio.run(resolve(target, names, allow_private=allow_private))
    except Refused:
        return "refused"
    return "ok"


@pytest.mark.parametrize(
    "url",
    [
        # Every spelling of loopback seen in the wild, and the usual private ones.
        "http://127.0.0.1/hook",
        "http://127.0.0.1./hook",
        "http://2130706433/hook",
        "http://0x7f000001/hook",
        "http://0X7F000001/hook",
        "http://0177.0.0.1/hook",
        "http://0x7f.0.0.1/hook",
        "http://127.1/hook",
        "http://127.0.1/hook",
        "http://017700000001/hook",
        "http://0/hook",
        "http://0.0.0.0/hook",
        "http://localhost/hook",
        "http://LOCALHOST./hook",
        "http://LocalHost:8080/hook",
        "http://api.localhost/hook",
        "http://[::1]/hook",
        "http://[0:0:0:0:0:0:0:1]/hook",
        "http://[::]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://[::127.0.0.1]/hook",
        "http://[64:ff9b::7f00:1]/hook",
        "http://[64:ff9b::a00:1]/hook",
        "http://[2002:7f00:1::1]/hook",
        "http://[2002:c0a8:101::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fe80::1%25eth0]/hook",
        "http://[fc00::1]/hook",
        "http://[ff02::1]/hook",
        "http://[2001:db8::1]/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://198.18.0.1/hook",
        "http://224.0.0.1/hook",
        "http://255.255.255.255/hook",
        "http://192.0.2.1/hook",
        # Names that resolve to such addresses, or to one among public ones.
        "http://internal.example.net/hook",
        "http://mixed.example.net/hook",
        "http://rebind.example.net/hook",
        "http://six.example.net/hook",
        "http://mapped.example.net/hook",
    ],
)
def test_every_spelling_of_a_non_public_address_is_refused(url: str) -> None:
    assert check(url) in ("bad", "refused"), url


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.net/status",
        "http://hooks.example.net:8080/a?b=c",
        "https://HOOKS.example.net./x",
        "http://93.184.216.34/hook",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/hook",
        "http://[::ffff:93.184.216.34]/hook",
        "http://[64:ff9b::5db8:d822]/hook",
    ],
)
def test_public_addresses_and_names_pass(url: str) -> None:
    assert check(url) == "ok", url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.net/",
        "javascript:alert(1)",
        "http:///no-host",
        "https://exa mple.net/",
        "hooks.example.net/path",
        "http://host:port/",
        "http://hooks.example.net:0/",
        "https://user:secret@hooks.example.net/",
        "https://user@hooks.example.net/",
        "http://hooks_example.net/",
        "http://-hooks.example.net/",
        "http://hooks..example.net/",
        "http://[hooks.example.net]/",
        "http://1.2.3.4.5/",
        "http://" + "a" * 64 + ".example.net/",
        "https://hooks.example.net/" + "x" * 3000,
        "http://hooks.example.net/\x00",
        "",
    ],
)
def test_malformed_urls_are_bad(url: str) -> None:
    assert check(url) == "bad", url


def test_the_operator_may_allow_private_addresses_but_not_malformed_ones() -> None:
    assert check("http://127.0.0.1:8080/hook", allow_private=True) == "ok"
    assert check("http://localhost/hook", allow_private=True) == "ok"
    assert check("http://internal.example.net/hook", allow_private=True) == "ok"
    assert check("http://2130706433/hook", allow_private=True) == "bad"


def test_a_target_holds_what_the_request_needs() -> None:
    target = parse("https://Hooks.Example.NET.:8443/a/b?c=d#frag")
    assert target == Target(
        url="https://Hooks.Example.NET.:8443/a/b?c=d#frag",
        scheme="https",
        host="hooks.example.net",
        port=8443,
        path="/a/b?c=d",
    )
    assert target.authority == "hooks.example.net:8443"
    assert parse("http://[2001:db8::1]/").authority == "[2001:db8::1]"
    assert parse("http://bücher.example/").host == "xn--bcher-kva.example"
    assert target.with_query({"hub.challenge": "a b"}) == "/a/b?c=d&hub.challenge=a+b"
    assert parse("http://x.example").with_query({"k": "v"}) == "/?k=v"


async def test_a_name_is_resolved_once_and_its_addresses_returned() -> None:
    asked: list[str] = []

    async def counting(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.216.34", "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]

    found = await resolve(parse("https://hooks.example.net/"), counting, allow_private=False)
    assert asked == ["hooks.example.net"]
    assert [str(a) for a in found] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    # An address literal needs no lookup at all.
    await resolve(parse("http://93.184.216.34/"), counting, allow_private=False)
    assert asked == ["hooks.example.net"]


async def test_an_unresolvable_name_is_an_oserror_not_a_refusal() -> None:
    async def nothing(host: str, port: int) -> list[str]:
        return []

    with pytest.raises(OSError):
        await resolve(parse("https://gone.example.net/"), nothing, allow_private=False)


def test_is_public_looks_through_ipv6_forms_that_carry_ipv4() -> None:
    public = ipaddress.ip_address("93.184.216.34")
    assert is_public(public)
    for text in ("::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1"):
        assert is_public(ipaddress.ip_address(text)), text
    for text in ("::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1", "::a00:1", "100::1"):
        assert not is_public(ipaddress.ip_address(text)), text


# -- fuzzing ---------------------------------------------------------------------------------------
def spellings(value: int) -> list[str]:
    """Ways to write the IPv4 address `value` in a URL's host."""
    a, b, c, d = value.to_bytes(4, "big")
    return [
        f"{a}.{b}.{c}.{d}",
        f"{a}.{b}.{c}.{d}.",
        str(value),
        hex(value),
        hex(value).upper().replace("X", "x", 1),
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"[::ffff:{a}.{b}.{c}.{d}]",
        f"[::ffff:{value >> 16:x}:{value & 0xFFFF:x}]",
        f"[64:ff9b::{value >> 16:x}:{value & 0xFFFF:x}]",
        f"[2002:{value >> 16:x}:{value & 0xFFFF:x}::1]",
        f"[::{a}.{b}.{c}.{d}]",
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32 - 1), st.data())
def test_any_spelling_of_any_ipv4_address_passes_only_if_public_and_canonical(
    value: int, data: st.DataObject
) -> None:
    forms = spellings(value)
    index = data.draw(st.integers(0, len(forms) - 1))
    url = f"http://{forms[index]}:8080/hook"
    public = is_public(ipaddress.IPv4Address(value))
    verdict = check(url)
    if not public:
        assert verdict in ("bad", "refused"), url
    elif index in (0, 1):
        assert verdict == "ok", url  # dotted decimal, with or without the root's dot
    elif index in (2, 3, 4, 5, 6, 7):
        # Other numeric spellings are refused as malformed, whatever they stand for (an octal
        # part without a leading digit past 7 may read as decimal: still not canonical).
        assert verdict == "bad" or forms[index].rstrip(".") == forms[0], url


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_target_or_bad_never_a_crash(text: str) -> None:
    try:
        target = parse(text)
    except BadUrl:
        return
    assert target.scheme in ("http", "https")
    assert target.host.isascii() and target.host == target.host.lower()
    assert 0 < target.port < 65536 and target.path.startswith("/")
    assert not any(ch.isspace() for ch in target.path)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["http", "https"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%:[]@!$&'()*+,;=ÄßX", max_size=40),
    st.text(alphabet="/abc?=&%#.", max_size=20),
)
def test_any_url_shaped_text_is_a_target_or_bad(scheme: str, host: str, path: str) -> None:
    try:
        target = parse(f"{scheme}://{host}{path}")
    except BadUrl:
        return
    if target.literal is None:
        labels = target.host.split(".")
        assert all(0 < len(label) <= 63 for label in labels)
        assert not labels[-1].isdigit()
