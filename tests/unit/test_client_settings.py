"""Client settings from listeners and `[dns.public_ports]`, and the documents built from them,
without a node: public ports, listeners that are off, escaping of operator text, Autodiscover
request forms, a certificate that cannot sign."""

from __future__ import annotations

import dataclasses
import plistlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mailfort.config import Config, DnsConfig, PublicPortsConfig, StatusConfig
from mailfort.wellknown import autoconfig, autodiscover, mobileconfig
from mailfort.wellknown.client_settings import Server, client_settings

ALL = {
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "http": 80,
}


def config(**ports: int) -> Config:
    dns = DnsConfig(public_ports=PublicPortsConfig(**ports))
    return Config(hostname="mail.example.net", dns=dns)


def test_public_ports_replace_the_bound_ones() -> None:
    settings = client_settings(
        config(imaps=993, submissions=465),
        {"imaps": 2993, "imap": 2143, "submissions": 2465},
    )
    assert settings.incoming == (
        Server(protocol="imap", host="mail.example.net", port=993, implicit_tls=True),
        Server(protocol="imap", host="mail.example.net", port=2143, implicit_tls=False),
    )
    assert settings.outgoing == (
        Server(protocol="smtp", host="mail.example.net", port=465, implicit_tls=True),
    )


def test_a_listener_that_is_off_is_never_offered_even_with_a_public_port() -> None:
    bound = {k: v for k, v in ALL.items() if k not in ("imaps", "submissions", "pop3s", "pop3")}
    settings = client_settings(config(imaps=993, pop3=110), bound)
    assert [(s.port, s.implicit_tls) for s in settings.incoming] == [(143, False)]
    assert settings.first("pop3") is None
    assert settings.first("smtp") == Server(
        protocol="smtp", host="mail.example.net", port=587, implicit_tls=False
    )
    # Outlook gets the STARTTLS listener, marked so.
    root = ET.fromstring(autodiscover.document(settings, "u@example.net"))
    encryption = [e.text for e in root.iter(f"{{{autodiscover.OUTLOOK_NS}}}Encryption")]
    assert encryption == ["TLS", "TLS"]


def test_no_incoming_listener_means_no_profile() -> None:
    settings = client_settings(config(), {"submissions": 465})
    assert mobileconfig.profile(settings, "u@example.net") is None
    pop_only = client_settings(config(), {"pop3s": 995, "submissions": 465})
    body = mobileconfig.profile(pop_only, "u@example.net")
    assert body is not None
    assert plistlib.loads(body)["PayloadContent"][0]["EmailAccountType"] == "EmailTypePOP"


def test_operator_text_is_escaped_in_every_document() -> None:
    name = 'Bad </displayName><incomingServer type="x"> & Co'
    cfg = dataclasses.replace(config(), status=StatusConfig(provider_name=name))
    settings = client_settings(cfg, ALL)
    root = ET.fromstring(autoconfig.document(settings, "example.net"))
    assert root.findtext("emailProvider/displayName") == name
    assert [s.get("type") for s in root.iter("incomingServer")] == ["imap", "imap", "pop3", "pop3"]
    profile = mobileconfig.profile(settings, "u@example.net")
    assert profile is not None
    assert plistlib.loads(profile)["PayloadOrganization"] == name


@pytest.mark.parametrize(
    "body",
    [
        b"<Autodiscover><Request><EMailAddress> u@example.net </EMailAddress></Request>"
        b"</Autodiscover>",
        (
            f'<Autodiscover xmlns="{autodiscover.REQUEST_NS}"><Request>'
            "<EMailAddress>u@example.net</EMailAddress><AcceptableResponseSchema>"
            f"{autodiscover.OUTLOOK_NS}</AcceptableResponseSchema></Request></Autodiscover>"
        ).encode(),
    ],
)
def test_autodiscover_requests_with_and_without_namespace(body: bytes) -> None:
    assert autodiscover.parse_request(body) == ("u@example.net", autodiscover.OUTLOOK_NS)


def test_profile_download_name_is_safe() -> None:
    assert mobileconfig.filename('a"b/c@example.net') == "a_b_c_example.net.mobileconfig"


def test_an_unusable_certificate_leaves_the_profile_unsigned(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    assert mobileconfig.sign(b"<plist/>", cert, key) is None
    assert mobileconfig.sign(b"<plist/>", tmp_path / "missing", key) is None
