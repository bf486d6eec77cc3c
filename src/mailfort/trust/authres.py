"""The Authentication-Results header (RFC 8601): our verdicts, and nobody else's in our name.

One field, prepended at the MX, with authserv-id = the node's `hostname`:

    Authentication-Results: mx.example.org;
     spf=pass smtp.mailfrom=alice@example.com;
     dkim=pass header.d=example.com header.s=sel header.a=rsa-sha256;
     dmarc=pass policy.dmarc=reject header.from=example.com;
     arc=none

`spf` names `smtp.mailfrom` (or `smtp.helo` for a null sender), `dkim` appears once per
signature checked (`dkim=none` without one), `arc=pass|fail|none` is the chain's cv, which our
ARC sealer reads when it forwards the message. Every value that came from the sender is reduced
to the characters a `value` or `pvalue` may hold, so nothing it sends can add to the field.

RFC 8601 5: an Authentication-Results field from outside that carries our authserv-id is a
forgery (or our own verdict from an earlier pass, which is stale): `ours` finds them so the MX
removes them. ARC-Authentication-Results fields are part of ARC chains and stay.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from mailfort.trust.dkim_check import DkimResult
from mailfort.trust.dmarc import DmarcResult
from mailfort.trust.headers import Field
from mailfort.trust.spf import SpfResult

_TOKEN: Final = re.compile(r"[^A-Za-z0-9!#$%&'*+\-.^_`{|}~@]")
# A pvalue may be `local-part "@" domain` (RFC 8601 2.2): a dot-atom local part holds "=", "/"
# and "?" too, which SRS addresses (SRS0=hash=tt=domain=user@forwarder) are made of.
_ADDRESS: Final = re.compile(r"[^A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]")
_COMMENT: Final = re.compile(r"\([^()]*\)")


def _value(text: str, limit: int = 254) -> str:
    """A value safe to write unquoted: a token (or local@domain), nothing else."""
    cleaned = _TOKEN.sub("", text)[:limit]
    return cleaned or "unknown"


def _address(text: str, limit: int = 254) -> str:
    """An envelope address as a pvalue: `local-part@domain`, or a token if it is no address."""
    if text.count("@") != 1:
        return _value(text, limit)
    cleaned = _ADDRESS.sub("", text)[:limit]
    return cleaned if not cleaned.startswith("@") else _value(text, limit)


def format_header(
    authserv_id: str,
    spf: SpfResult,
    dkim: Sequence[DkimResult],
    dmarc: DmarcResult,
    arc: str,
) -> bytes:
    lines = [f"Authentication-Results: {_value(authserv_id)}"]
    if spf.identity == "helo":
        lines.append(f"spf={spf.result.value} smtp.helo={_value(spf.domain)}")
    else:
        lines.append(f"spf={spf.result.value} smtp.mailfrom={_address(spf.sender)}")
    if not dkim:
        lines.append("dkim=none")
    for signature in dkim:
        parts = [f"dkim={signature.result}", f"header.d={_value(signature.domain)}"]
        if signature.selector:
            parts.append(f"header.s={_value(signature.selector)}")
        if signature.algorithm:
            parts.append(f"header.a={_value(signature.algorithm)}")
        lines.append(" ".join(parts))
    parts = [f"dmarc={dmarc.result}"]
    if dmarc.published is not None:
        parts.append(f"policy.dmarc={dmarc.published.label}")
    if dmarc.from_domain:
        parts.append(f"header.from={_value(dmarc.from_domain)}")
    lines.append(" ".join(parts))
    lines.append(f"arc={arc if arc in ('pass', 'fail', 'none') else 'fail'}")
    return (";\r\n\t".join(lines) + "\r\n").encode("ascii")


def authserv_id(value: str) -> str:
    """The authserv-id an Authentication-Results value starts with (comments left out)."""
    without = _COMMENT.sub(" ", value)
    return without.split(";", 1)[0].strip().split(" ", 1)[0].strip().lower().rstrip(".")


def ours(header: Sequence[Field], our_id: str) -> list[Field]:
    """The Authentication-Results fields that claim our authserv-id (RFC 8601 5)."""
    mine = our_id.lower().rstrip(".")
    return [
        f for f in header if f.name == "authentication-results" and authserv_id(f.value) == mine
    ]


def results(value: str) -> dict[str, str]:
    """method -> result of one Authentication-Results value (the first of each method)."""
    found: dict[str, str] = {}
    for part in _COMMENT.sub(" ", value).split(";")[1:]:
        method, eq, rest = part.strip().partition("=")
        if eq:
            found.setdefault(method.strip().lower(), rest.strip().split(" ", 1)[0].lower())
    return found
