"""Thunderbird autoconfiguration: `config-v1.1.xml` for the addresses of our domains.

Thunderbird (and K-9/Thunderbird for Android, Evolution, KMail) asks, for `user@example.com`,
`https://autoconfig.example.com/mail/config-v1.1.xml?emailaddress=user@example.com` and then
`https://example.com/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=...`; both answer
here. The format is Mozilla's "clientConfig" version 1.1 (wiki.mozilla.org/Thunderbird:
Autoconfiguration:ConfigFileFormat): one `emailProvider` whose id is the domain, `domain`,
`displayName`, `displayShortName`, then `incomingServer` (type imap or pop3) and `outgoingServer`
(type smtp) elements, each with hostname, port, socketType (SSL: implicit TLS, STARTTLS),
username and authentication, in order of preference.

Only the asked domain is named, not every local domain: the file is public, and a provider's
list of customer domains is not (Thunderbird reads only the domain it asked about).
The address is parsed and only its normalized domain is written back; the XML is built by
ElementTree, which escapes whatever text it is given.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mailfort.mail.address import domain_of, normalize_domain
from mailfort.wellknown.answer import client_answer
from mailfort.wellknown.client_settings import ClientDirectory, ClientSettings, Server

PATHS = ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml")
MEDIA_TYPE = "application/xml"
# `%EMAILADDRESS%` is Thunderbird's placeholder for the address the user typed: our logins are
# full addresses.
USERNAME = "%EMAILADDRESS%"


def document(settings: ClientSettings, domain: str) -> bytes:
    """The clientConfig 1.1 document for `domain`."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = settings.display_name
    ET.SubElement(provider, "displayShortName").text = settings.display_name
    for server in settings.incoming:
        _server(ET.SubElement(provider, "incomingServer", type=server.protocol), server)
    for server in settings.outgoing:
        _server(ET.SubElement(provider, "outgoingServer", type=server.protocol), server)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _server(element: ET.Element, server: Server) -> None:
    ET.SubElement(element, "hostname").text = server.host
    ET.SubElement(element, "port").text = str(server.port)
    ET.SubElement(element, "socketType").text = "SSL" if server.implicit_tls else "STARTTLS"
    ET.SubElement(element, "username").text = USERNAME
    # The password in the clear inside TLS: AUTH PLAIN/LOGIN, IMAP LOGIN, POP3 USER/PASS.
    ET.SubElement(element, "authentication").text = "password-cleartext"


def _domain_from_host(request: Request) -> str | None:
    """`autoconfig.example.com` -> `example.com` when no address was given."""
    host = request.headers.get("host", "").rpartition(":")[0] or request.headers.get("host", "")
    name = normalize_domain(host) if host else None
    if name is None or not name.startswith("autoconfig."):
        return None
    return name.removeprefix("autoconfig.")


def routes(clients: ClientDirectory) -> list[BaseRoute]:
    async def config_xml(request: Request) -> Response:
        given = request.query_params.get("emailaddress", "")

        async def find() -> str | None:
            if given:
                address = await clients.local_address(given)
                return None if address is None else domain_of(address)
            domain = _domain_from_host(request)
            return domain if domain in await clients.local_domains() else None

        return await client_answer(
            clients,
            find,
            document,
            what="autoconfig",
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "max-age=300"},
        )

    return [Route(path, config_xml, methods=["GET"]) for path in PATHS]
