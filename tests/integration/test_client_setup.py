"""Client autoconfiguration from a real node over HTTP: Thunderbird's config-v1.1.xml, Outlook's
Autodiscover POX and the Apple profile from `/account`, each parsed and checked field by field
against the listeners the node really runs; and a mail client that follows them logs in."""

from __future__ import annotations

import base64
import imaplib
import plistlib
import re
import smtplib
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.integration.status_web_support import start_web_node
from tests.nodeproc import NodeProcess
from tests.rawclient import client_tls

PASSWORD = "correct horse battery staple"
ALICE = "alice@example.test"
BOB = "bob@example.test"
HOST = "mx.mailfort.test"  # the test node's `hostname`
AUTOCONFIG = "/.well-known/autoconfig/mail/config-v1.1.xml"
AUTODISCOVER = "/autodiscover/autodiscover.xml"
PROFILE = "/account/mailfort.mobileconfig"
REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
A = "{" + OUTLOOK + "}"
# What Thunderbird's config-v1.1.xml must hold, after its documentation: every server element
# has exactly these children, each once.
SERVER_CHILDREN = ["hostname", "port", "socketType", "username", "authentication"]


@dataclass
class Site:
    node: NodeProcess
    client: httpx.Client

    def port(self, listener: str) -> int:
        return self.node.ports[listener]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    node, base = start_web_node(
        tmp_path_factory.mktemp("clients"), {ALICE: PASSWORD, BOB: PASSWORD}
    )
    client = httpx.Client(base_url=base, timeout=15, trust_env=False)
    try:
        yield Site(node, client)
    finally:
        client.close()
        node.stop()


def autodiscover_request(address: str, schema: str = OUTLOOK) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{REQUEST_NS}"><Request>'
        f"<EMailAddress>{address}</EMailAddress>"
        f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>"
    ).encode()


def signed_profile(site: Site, signed: bytes) -> dict[str, Any]:
    """The plist inside a CMS SignedData profile, after openssl checked the signature (not the
    chain: the test node's certificate is self-signed); the signer must be the node's own."""
    assert not signed.startswith(b"<?xml"), "the profile is signed"
    found = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-noverify"],
        input=signed,
        capture_output=True,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    node_cert = x509.load_pem_x509_certificate((site.node.data_dir / "tls/cert.pem").read_bytes())
    assert pkcs7.load_der_pkcs7_certificates(signed) == [node_cert]
    parsed: dict[str, Any] = plistlib.loads(found.stdout)
    return parsed


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- Thunderbird ---------------------------------------------------------------------------------
# Mozilla's clientConfig 1.1 (wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat),
# as far as a provider of IMAP/POP3/SMTP uses it: the order of an emailProvider's children, and
# the values each server field may take.
PROVIDER_ORDER = re.compile(
    r"(domain )+displayName displayShortName (incomingServer )+(outgoingServer )+"
)
VALUES = {
    "socketType": {"plain", "SSL", "STARTTLS"},
    "authentication": {
        "password-cleartext",
        "password-encrypted",
        "NTLM",
        "GSAPI",
        "client-IP-address",
        "TLS-client-cert",
        "OAuth2",
        "none",
    },
}


def assert_clientconfig_schema(root: ET.Element) -> None:
    assert root.tag == "clientConfig" and root.attrib == {"version": "1.1"}
    assert [c.tag for c in root] == ["emailProvider"]
    provider = root[0]
    assert set(provider.attrib) == {"id"}
    assert PROVIDER_ORDER.fullmatch(" ".join(c.tag for c in provider) + " "), [
        c.tag for c in provider
    ]
    for kind, types in (("incomingServer", {"imap", "pop3"}), ("outgoingServer", {"smtp"})):
        for server in provider.findall(kind):
            assert server.attrib.keys() == {"type"} and server.get("type") in types
            assert [c.tag for c in server] == SERVER_CHILDREN
            assert all(len(c) == 0 and (c.text or "").strip() for c in server)
            assert 0 < int(server.findtext("port", "")) < 65536
            for name, allowed in VALUES.items():
                assert server.findtext(name) in allowed


def servers(provider: ET.Element, kind: str) -> list[dict[str, str]]:
    found = []
    for element in provider.findall(kind):
        children = [child.tag for child in element]
        assert children == SERVER_CHILDREN, f"{kind} children {children}"
        found.append({"type": element.get("type", ""), **{c.tag: c.text or "" for c in element}})
    return found


def expected_server(kind: str, port: int, tls: str) -> dict[str, str]:
    return {
        "type": kind,
        "hostname": HOST,
        "port": str(port),
        "socketType": tls,
        "username": "%EMAILADDRESS%",
        "authentication": "password-cleartext",
    }


@pytest.mark.parametrize("path", [AUTOCONFIG, "/mail/config-v1.1.xml"])
def test_thunderbird_autoconfig_names_every_listener_preferring_implicit_tls(
    site: Site, path: str
) -> None:
    r = site.client.get(path, params={"emailaddress": ALICE})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert_clientconfig_schema(root)
    providers = root.findall("emailProvider")
    assert len(providers) == 1
    provider = providers[0]
    assert provider.get("id") == "example.test"
    assert [d.text for d in provider.findall("domain")] == ["example.test"]
    assert provider.findtext("displayName") == "Example Mail"
    assert provider.findtext("displayShortName") == "Example Mail"
    # Order is preference (RFC 8314): implicit TLS first, IMAP before POP3.
    assert servers(provider, "incomingServer") == [
        expected_server("imap", site.port("imaps"), "SSL"),
        expected_server("imap", site.port("imap"), "STARTTLS"),
        expected_server("pop3", site.port("pop3s"), "SSL"),
        expected_server("pop3", site.port("pop3"), "STARTTLS"),
    ]
    assert servers(provider, "outgoingServer") == [
        expected_server("smtp", site.port("submissions"), "SSL"),
        expected_server("smtp", site.port("submission"), "STARTTLS"),
    ]
    # The MX port is for other servers, never for a mail client.
    assert str(site.port("smtp")) not in [s["port"] for s in servers(provider, "outgoingServer")]


def test_autoconfig_by_host_name_as_thunderbird_asks_autoconfig_subdomain(site: Site) -> None:
    r = site.client.get("/mail/config-v1.1.xml", headers={"Host": "autoconfig.example.test"})
    assert r.status_code == 200
    assert ET.fromstring(r.content).find("emailProvider").get("id") == "example.test"  # type: ignore[union-attr]
    assert site.client.get("/mail/config-v1.1.xml").status_code == 404


@pytest.mark.parametrize(
    "address", ["someone@elsewhere.test", "not an address", "", "@example.test", "x@" + "a" * 400]
)
def test_autoconfig_refuses_other_domains_and_garbage(site: Site, address: str) -> None:
    r = site.client.get(AUTOCONFIG, params={"emailaddress": address} if address else {})
    assert r.status_code == 404
    assert b"clientConfig" not in r.content


def test_the_advertised_settings_really_log_in(site: Site) -> None:
    """What a client does with the answer: connect where it says, with TLS as it says."""
    root = ET.fromstring(site.client.get(AUTOCONFIG, params={"emailaddress": ALICE}).content)
    imap = root.find("emailProvider/incomingServer")
    smtp = root.find("emailProvider/outgoingServer")
    assert imap is not None and smtp is not None
    assert imap.findtext("socketType") == smtp.findtext("socketType") == "SSL"
    with imaplib.IMAP4_SSL(
        "127.0.0.1", int(imap.findtext("port", "")), ssl_context=client_tls()
    ) as c:
        assert c.login(ALICE, PASSWORD)[0] == "OK"
    port = int(smtp.findtext("port", ""))
    with smtplib.SMTP_SSL("127.0.0.1", port, context=client_tls(), timeout=15) as s:
        assert s.login(ALICE, PASSWORD)[0] == 235


# -- Autodiscover --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [AUTODISCOVER, "/Autodiscover/Autodiscover.xml"])
def test_autodiscover_pox_answers_imap_pop3_smtp(site: Site, path: str) -> None:
    r = site.client.post(path, content=autodiscover_request("Alice@Example.TEST"))
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    root = ET.fromstring(r.content)
    assert root.tag == RESPONSE_NS + "Autodiscover"
    account = root.find(f"{A}Response/{A}Account")
    assert account is not None
    assert account.findtext(f"{A}AccountType") == "email"
    assert account.findtext(f"{A}Action") == "settings"
    protocols = {
        p.findtext(f"{A}Type"): {c.tag.removeprefix(A): c.text for c in p}
        for p in account.findall(f"{A}Protocol")
    }
    expected = {"IMAP": "imaps", "POP3": "pop3s", "SMTP": "submissions"}
    assert set(protocols) == set(expected)
    for kind, listener in expected.items():
        assert protocols[kind] == {
            "Type": kind,
            "Server": HOST,
            "Port": str(site.port(listener)),
            "DomainRequired": "off",
            "LoginName": ALICE,
            "SPA": "off",
            "SSL": "on",
            "Encryption": "SSL",
            "AuthRequired": "on",
        }


def test_autodiscover_other_domain_404_and_other_schema_error(site: Site) -> None:
    r = site.client.post(AUTODISCOVER, content=autodiscover_request("x@elsewhere.test"))
    assert r.status_code == 404
    mobilesync = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
    r = site.client.post(AUTODISCOVER, content=autodiscover_request(ALICE, mobilesync))
    assert r.status_code == 200
    assert ET.fromstring(r.content).findtext(f".//{RESPONSE_NS}ErrorCode") == "601"
    assert site.client.get(AUTODISCOVER).status_code == 405


# -- Apple profile -------------------------------------------------------------------------------
def test_account_page_links_the_profile(site: Site) -> None:
    r = site.client.get("/account", headers=basic(ALICE))
    assert r.status_code == 200
    assert 'href="account/mailfort.mobileconfig"' in r.text


def test_mobileconfig_is_the_users_own_without_password(site: Site) -> None:
    r = site.client.get(PROFILE, headers=basic(ALICE))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-apple-aspen-config"
    assert "no-store" in r.headers["cache-control"]
    assert 'filename="alice_example.test.mobileconfig"' in r.headers["content-disposition"]
    assert PASSWORD.encode() not in r.content
    profile = signed_profile(site, r.content)
    assert profile["PayloadType"] == "Configuration"
    assert profile["PayloadVersion"] == 1
    assert profile["PayloadRemovalDisallowed"] is False
    (mail,) = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["PayloadVersion"] == 1
    assert mail["PayloadIdentifier"].startswith(profile["PayloadIdentifier"] + ".")
    assert mail["PayloadUUID"] != profile["PayloadUUID"]
    assert {k: v for k, v in mail.items() if not k.startswith("Payload")} == {
        "EmailAccountDescription": f"Example Mail ({ALICE})",
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": ALICE,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": HOST,
        "IncomingMailServerPortNumber": site.port("imaps"),
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": ALICE,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": HOST,
        "OutgoingMailServerPortNumber": site.port("submissions"),
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": ALICE,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    # Stable: the same download replaces the installed profile rather than adding one.
    again = signed_profile(site, site.client.get(PROFILE, headers=basic(ALICE)).content)
    assert again == profile
    bobs = signed_profile(site, site.client.get(PROFILE, headers=basic(BOB)).content)
    assert bobs["PayloadContent"][0]["EmailAddress"] == BOB
    assert bobs["PayloadUUID"] != profile["PayloadUUID"]
    assert bobs["PayloadIdentifier"] != profile["PayloadIdentifier"]


def test_mobileconfig_needs_the_users_own_login(site: Site) -> None:
    assert site.client.get(PROFILE).status_code == 401
    assert site.client.get(PROFILE, headers=basic(ALICE, "wrong")).status_code == 401
    # Bob's login gets Bob's profile, whatever the request names: the address comes from the login.
    r = site.client.get(PROFILE, params={"emailaddress": ALICE}, headers=basic(BOB))
    assert r.status_code == 200
    assert ALICE.encode() not in r.content
    assert signed_profile(site, r.content)["PayloadContent"][0]["EmailAddress"] == BOB
