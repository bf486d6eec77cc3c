"""POP3 status lines and response codes, named once (RFC 1939 §3, RFC 2449 §8, RFC 3206).

A reply is one line `+OK text` or `-ERR [CODE] text`. Response codes tell the client what
kind of failure it met, so it can act without parsing prose: `IN-USE` (someone else holds the
maildrop), `AUTH` (the credentials are wrong: ask the user), `SYS/TEMP` (try again later, no
user action), `SYS/PERM` (it will not work later either).
"""

from __future__ import annotations

import enum
from typing import Final


class Code(enum.Enum):
    IN_USE = "IN-USE"  # RFC 2449 §8.1.1
    LOGIN_DELAY = "LOGIN-DELAY"  # RFC 2449 §8.1.2 (not used: no LOGIN-DELAY policy)
    SYS_TEMP = "SYS/TEMP"  # RFC 3206 §4
    SYS_PERM = "SYS/PERM"  # RFC 3206 §4
    AUTH = "AUTH"  # RFC 3206 §5


def ok(text: str) -> bytes:
    return b"+OK " + _clean(text) + b"\r\n"


def err(text: str, code: Code | None = None) -> bytes:
    prefix = f"[{code.value}] " if code is not None else ""
    return b"-ERR " + _clean(prefix + text) + b"\r\n"


def _clean(text: str) -> bytes:
    """Reply text on one line: a client's input echoed back never carries CR, LF or NUL."""
    data = text.encode("utf-8", "replace")
    return bytes(b if b >= 0x20 and b != 0x7F else 0x3F for b in data)


GREETING: Final = "{hostname} mailfort POP3 ready"
CONTINUE: Final = b"+ \r\n"  # RFC 5034 §4: an empty server challenge

# Authorization
USER_OK: Final = "send PASS"
PASS_WITHOUT_USER: Final = "PASS must follow a successful USER"
PLAINTEXT_REFUSED: Final = "plaintext authentication needs TLS; use STLS first"
LOGGED_IN: Final = "logged in; {count} messages ({octets} octets)"
BAD_CREDENTIALS: Final = "invalid user name or password"
IN_USE: Final = "maildrop is in use by another session; try again later"
TOO_MANY_SESSIONS: Final = "too many sessions for this account; try again later"
THROTTLED: Final = "too many failed logins, try again later"
UNAVAILABLE: Final = "temporarily unavailable, try again later"
NO_MAILDROP: Final = "no maildrop for this account"
MECHANISMS: Final = "supported mechanisms follow"
MECHANISM_UNSUPPORTED: Final = "unsupported mechanism; use PLAIN"
AUTH_CANCELLED: Final = "authentication cancelled"
AUTH_BAD_BASE64: Final = "invalid base64 in the SASL response"
AUTH_MALFORMED: Final = "malformed PLAIN credentials"
AUTH_AUTHZID: Final = "cannot act for another user"
TLS_BEGIN: Final = "begin TLS negotiation"
TLS_ACTIVE: Final = "TLS is already active"
TOO_MANY_UNAUTH: Final = "too many commands without logging in; closing"

# Transaction
STAT: Final = "{count} {octets}"
LIST_ALL: Final = "{count} messages ({octets} octets)"
UIDL_ALL: Final = "unique-id listing follows"
CAPA: Final = "capability list follows"
RETR: Final = "{octets} octets"
TOP: Final = "top of message follows"
DELETED: Final = "message {number} deleted"
RSET: Final = "maildrop has {count} messages ({octets} octets)"
NOOP: Final = "nothing to do"
NO_SUCH_MESSAGE: Final = "no such message"
ALREADY_DELETED: Final = "message {number} is already deleted"
MESSAGE_GONE: Final = "message {number} was removed by another session"

# Update and leaving
BYE: Final = "{hostname} mailfort POP3 signing off"
BYE_UPDATED: Final = "{hostname} signing off ({count} messages left)"
UPDATE_FAILED: Final = "some deleted messages not removed; try again later"

# Protocol errors
UNKNOWN_COMMAND: Final = "unknown command"
WRONG_STATE: Final = "{verb} is not allowed in the {state} state"
LINE_TOO_LONG: Final = "line too long (at most {limit} octets with CRLF)"
TOO_MANY_ERRORS: Final = "too many errors; closing"
AUTOLOGOUT: Final = "autologout; idle for too long"
SERVER_BUSY: Final = "server busy, try again later"
SHUTTING_DOWN: Final = "server shutting down, try again later"
TOO_MANY_FROM_IP: Final = "too many connections from your address"
INTERNAL_ERROR: Final = "internal error, please reconnect"
