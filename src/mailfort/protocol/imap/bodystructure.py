"""BODYSTRUCTURE and BODY fetch items (RFC 9051 7.5.2 and 9 `body`; RFC 3501 7.4.2).

    body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]
    body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP
                      body-fld-octets
    body-type-msg   = media-message SP body-fields SP envelope SP body SP body-fld-lines
    body-type-text  = media-text SP body-fields SP body-fld-lines
    body-ext-1part  = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]]
    body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
    body-ext-mpart  = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]]

Choices (the RFC leaves them open):
- Type, subtype, encoding, disposition type and parameter names are sent upper-case, as in the
  RFC's own examples ("TEXT" "PLAIN" ("CHARSET" "US-ASCII")); parameter values as in the message.
- Parameters are sent as the message has them, with RFC 2231 continuations merged (as Dovecot
  does): `filename*0*=utf-8''%C3%A4; filename*1*=.pdf` goes out as ("FILENAME*"
  "utf-8''%C3%A4.pdf"). That stays 7-bit and lossless for every client, whether or not it
  enabled UTF8=ACCEPT; clients that read RFC 2231 (Thunderbird, K-9, mutt, imapclient users via
  email.utils) decode it. Decoded values are on `Part.param` for the server's own use.
- Extension data is always complete (all four fields), NIL where absent; a language is always
  a parenthesized list.
- A text part without a charset parameter gets ("CHARSET" "US-ASCII") appended, the default of
  RFC 2045 5.2 and RFC 2046 4.1.2 made explicit (Dovecot does the same).
- Only message/rfc822 is described as an encapsulated message (RFC 3501 knows no message/global).
"""

from __future__ import annotations

from mailfort.mail.mime import Part
from mailfort.protocol.imap.envelope import envelope, nstring


def bodystructure(part: Part, *, extended: bool) -> bytes:
    """BODYSTRUCTURE (extended=True) or BODY (extended=False) of a parsed message."""
    out = bytearray()
    _body(out, part, extended)
    return bytes(out)


def _body(out: bytearray, part: Part, extended: bool) -> None:
    out += b"("
    if part.is_multipart:
        for child in part.children:  # 1*body: no space between the parts
            _body(out, child, extended)
        out += b" " + nstring(part.subtype.upper().encode("ascii"))
        if extended:
            out += b" %b %b" % (_params(part.params), _extension(part))
    else:
        out += b"%b %b %b %b %b %b %d" % (
            nstring(part.type.upper().encode("ascii")),
            nstring(part.subtype.upper().encode("ascii")),
            _params(_text_default(part) if part.type == "text" else part.params),
            nstring(part.content_id),
            nstring(part.description),
            nstring(part.encoding.upper()),
            part.size,
        )
        if part.message is not None:
            out += b" " + envelope(part.message) + b" "
            _body(out, part.message, extended)
            out += b" %d" % part.lines
        elif part.type == "text":
            out += b" %d" % part.lines
        if extended:
            out += b" %b %b" % (nstring(part.md5), _extension(part))
    out += b")"


def _text_default(part: Part) -> tuple[tuple[str, bytes], ...]:
    if any(name == "charset" for name, _ in part.params):
        return part.params
    return (*part.params, ("charset", b"US-ASCII"))


def _params(params: tuple[tuple[str, bytes], ...]) -> bytes:
    """`body-fld-param = "(" string SP string *(SP string SP string) ")" / nil`."""
    if not params:
        return b"NIL"
    return (
        b"("
        + b" ".join(
            nstring(name.upper().encode("ascii", "replace")) + b" " + nstring(value)
            for name, value in params
        )
        + b")"
    )


def _extension(part: Part) -> bytes:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc, shared by both kinds of extension data."""
    if part.disposition is None:
        disposition = b"NIL"
    else:
        disposition = b"(%b %b)" % (
            nstring(part.disposition.upper()),
            _params(part.disposition_params),
        )
    if part.language:
        language = b"(" + b" ".join(nstring(tag) for tag in part.language) + b")"
    else:
        language = b"NIL"
    return b"%b %b %b" % (disposition, language, nstring(part.location))
