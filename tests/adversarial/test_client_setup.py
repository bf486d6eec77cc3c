"""Attacks on the client-setup answers of a real node: markup smuggled in through the address,
entity bombs and external entities in Autodiscover requests, bodies past the guard's bound."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.status_web_support import start_web_node

USER = "alice@example.test"
AUTOCONFIG = "/.well-known/autoconfig/mail/config-v1.1.xml"
AUTODISCOVER = "/autodiscover/autodiscover.xml"
REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + f']><Autodiscover xmlns="{REQUEST_NS}"><Request><EMailAddress>&lol9;@example.test'
    f"</EMailAddress></Request></Autodiscover>"
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    f'<Autodiscover xmlns="{REQUEST_NS}"><Request><EMailAddress>&e;</EMailAddress>'
    "</Request></Autodiscover>"
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    node, base = start_web_node(tmp_path_factory.mktemp("hostile"), {USER: "pw"})
    with httpx.Client(base_url=base, timeout=15, trust_env=False) as c:
        yield c
    node.stop()


@pytest.mark.parametrize(
    "address",
    [
        'a"/><incomingServer type="imap"><hostname>evil.test</hostname>@example.test',
        "x@example.test</domain><domain>evil.test",
        '"</displayName><script>"@example.test',
        "x@example.test\r\nContent-Type: text/html",
        "x@example.test&emailaddress=y@evil.test",
    ],
)
def test_markup_in_the_address_never_reaches_the_autoconfig_answer(
    client: httpx.Client, address: str
) -> None:
    r = client.get(AUTOCONFIG, params={"emailaddress": address})
    assert r.status_code == 404
    assert b"evil" not in r.content and b"<" not in r.content
    assert r.headers["content-type"].startswith("text/plain")


def test_markup_characters_an_address_may_hold_are_escaped_in_autodiscover(
    client: httpx.Client,
) -> None:
    """`&` and `'` are legal in a local part (RFC 5322 atext): written back, they are escaped."""
    body = (
        f'<Autodiscover xmlns="{REQUEST_NS}"><Request>'
        "<EMailAddress>a&amp;b'c@example.test</EMailAddress>"
        f"<AcceptableResponseSchema>{OUTLOOK}</AcceptableResponseSchema></Request></Autodiscover>"
    )
    r = client.post(AUTODISCOVER, content=body)
    assert r.status_code == 200, r.text
    assert b"a&amp;b" in r.content
    logins = [e.text for e in ET.fromstring(r.content).iter(f"{{{OUTLOOK}}}LoginName")]
    assert logins == ["a&b'c@example.test"] * 3


def test_markup_in_the_autodiscover_address_is_refused(client: httpx.Client) -> None:
    body = (
        f'<Autodiscover xmlns="{REQUEST_NS}"><Request>'
        "<EMailAddress>&quot;&lt;x&gt;&lt;/LoginName&gt;&quot;@example.test</EMailAddress>"
        f"<AcceptableResponseSchema>{OUTLOOK}</AcceptableResponseSchema></Request></Autodiscover>"
    )
    r = client.post(AUTODISCOVER, content=body)
    assert r.status_code == 404
    assert b"LoginName" not in r.content


def test_an_entity_bomb_is_refused_unexpanded(client: httpx.Client) -> None:
    started = time.monotonic()
    r = client.post(AUTODISCOVER, content=LAUGHS)
    assert r.status_code == 400
    assert time.monotonic() - started < 5
    assert b"lollol" not in r.content
    # The node is still answering.
    assert client.get(AUTOCONFIG, params={"emailaddress": USER}).status_code == 200


def test_an_external_entity_is_never_read(client: httpx.Client) -> None:
    r = client.post(AUTODISCOVER, content=EXTERNAL)
    assert r.status_code == 400
    assert b"root:" not in r.content


def test_a_body_past_the_guard_bound_is_refused_before_parsing(client: httpx.Client) -> None:
    padding = "<!--" + "x" * 40_000 + "-->"
    body = (
        f'<Autodiscover xmlns="{REQUEST_NS}">{padding}<Request><EMailAddress>{USER}'
        "</EMailAddress></Request></Autodiscover>"
    )
    assert client.post(AUTODISCOVER, content=body).status_code == 413


@pytest.mark.parametrize("body", [b"", b"not xml", b"<a>", b"\xff\xfe<\x00", b"<a/>" * 3])
def test_garbage_requests_get_400(client: httpx.Client, body: bytes) -> None:
    assert client.post(AUTODISCOVER, content=body).status_code == 400
