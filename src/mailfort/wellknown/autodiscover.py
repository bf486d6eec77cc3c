"""Microsoft Autodiscover, the "POX" (plain old XML) form Outlook asks for an IMAP/POP3 account.

Outlook POSTs to `https://autodiscover.example.com/autodiscover/autodiscover.xml` (and to
`https://example.com/autodiscover/autodiscover.xml`) a request naming `EMailAddress` and the
`AcceptableResponseSchema` it reads (`.../outlook/responseschema/2006a`); the answer is an
`Account` of type `email` with one `Protocol` per kind (IMAP, POP3, SMTP), each with Server,
Port, LoginName, SPA off, SSL on, AuthRequired on ([MS-OXDSCLI] 2.2.4). Only the preferred
listener of each kind is named: the schema has no order of preference among same-typed entries.
`Encryption` says which TLS (SSL: implicit, TLS: STARTTLS) and overrides `SSL` where read.

The request is XML from anyone: it is parsed by defusedxml with DTDs refused, so neither an
entity bomb ("billion laughs") nor an external entity is expanded; the body is bounded by the
http listener's guard (16 KiB, `status/web/app.py`) before it reaches here. The LoginName
written back is the normalized address, into XML built by ElementTree (escaped).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mailfort.wellknown.answer import client_answer
from mailfort.wellknown.client_settings import MAX_ADDRESS, ClientDirectory, ClientSettings

log = logging.getLogger("mailfort.wellknown")

PATHS = ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml")
REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MEDIA_TYPE = "text/xml"
_TYPES = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}


class BadRequest(Exception):
    """The request is not an Autodiscover request we can answer."""


def parse_request(body: bytes) -> tuple[str, str]:
    """(EMailAddress, AcceptableResponseSchema) of a POX request; BadRequest otherwise."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise BadRequest(type(exc).__name__) from None
    # Outlook sends the request namespace; some clients send none. Match on local names.
    found: dict[str, str] = {}
    for element in root.iter():
        name = element.tag.rpartition("}")[2] if isinstance(element.tag, str) else ""
        if name in ("EMailAddress", "AcceptableResponseSchema") and name not in found:
            found[name] = (element.text or "").strip()
    address = found.get("EMailAddress", "")
    if not address or len(address) > MAX_ADDRESS:
        raise BadRequest("no EMailAddress")
    return address, found.get("AcceptableResponseSchema", OUTLOOK_NS)


def document(settings: ClientSettings, address: str) -> bytes:
    root = ET.Element("Autodiscover", xmlns=RESPONSE_NS)
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_NS)
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    for protocol in ("imap", "pop3", "smtp"):
        server = settings.first(protocol)
        if server is None:
            continue
        element = ET.SubElement(account, "Protocol")
        for name, value in (
            ("Type", _TYPES[protocol]),
            ("Server", server.host),
            ("Port", str(server.port)),
            ("DomainRequired", "off"),
            ("LoginName", address),
            ("SPA", "off"),
            ("SSL", "on"),
            ("Encryption", "SSL" if server.implicit_tls else "TLS"),
            ("AuthRequired", "on"),
        ):
            ET.SubElement(element, name).text = value
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def error_document(code: str, message: str) -> bytes:
    """[MS-OXDSCLI] 2.2.4.2: 600 invalid request, 601 no provider for the schema asked."""
    root = ET.Element("Autodiscover", xmlns=RESPONSE_NS)
    response = ET.SubElement(root, "Response")
    error = ET.SubElement(response, "Error", Id="0", Time="00:00:00")
    ET.SubElement(error, "ErrorCode").text = code
    ET.SubElement(error, "Message").text = message
    ET.SubElement(error, "DebugData")
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def routes(clients: ClientDirectory) -> list[BaseRoute]:
    headers = {"Cache-Control": "private, no-store"}

    async def autodiscover(request: Request) -> Response:
        try:
            given, schema = parse_request(await request.body())
        except BadRequest as exc:
            log.info("event=autodiscover_bad_request reason=%s", exc)
            body = error_document("600", "Invalid Request")
            return Response(body, 400, media_type=MEDIA_TYPE, headers=headers)
        if schema != OUTLOOK_NS:
            body = error_document("601", "Provider is not available for the requested schema")
            return Response(body, media_type=MEDIA_TYPE, headers=headers)
        return await client_answer(
            clients,
            lambda: clients.local_address(given),
            document,
            what="autodiscover",
            media_type=MEDIA_TYPE,
            headers=headers,
        )

    return [Route(path, autodiscover, methods=["POST"]) for path in PATHS]
