"""SMTP replies with enhanced status codes (RFC 5321 4.2, RFC 3463), named once."""

from __future__ import annotations

import re
from typing import Final

# 2xx
SENDER_OK: Final = "250 2.1.0 Sender OK"
RECIPIENT_OK: Final = "250 2.1.5 Recipient OK"
AUTH_OK: Final = "235 2.7.0 Authentication successful"


def queued(queue_id: str) -> str:
    return f"250 2.0.0 OK queued as {queue_id}"


# 3xx
START_DATA: Final = "354 End data with <CR><LF>.<CR><LF>"

# 4xx: temporary, the sender retries
TOO_MANY_CONNECTIONS_NODE: Final = "421 4.3.2 Too many connections, try again later"
TOO_MANY_CONNECTIONS_IP: Final = "421 4.7.0 Too many connections from your address, try again later"
SESSION_TOO_LONG: Final = "421 4.4.2 Session time limit exceeded, closing"
SHUTTING_DOWN: Final = "421 4.3.2 Service shutting down, try again later"
STORE_UNAVAILABLE: Final = "451 4.3.0 Temporary failure, please try again later"
INTERNAL_ERROR: Final = "451 4.3.0 Internal error, please try again later"
TOO_MANY_RECIPIENTS: Final = "452 4.5.3 Too many recipients"
# RFC 3463 X.2.2 "mailbox full", a persistent transient failure; RFC 1870 6.1: 452 when the
# storage a message needs is lacking now.
MAILBOX_FULL: Final = "452 4.2.2 Mailbox full"
MAILBOX_NO_ROOM: Final = "452 4.2.2 Mailbox full: the message does not fit the remaining quota"
AUTH_THROTTLED: Final = "454 4.7.0 Too many failed logins, try again later"
# RFC 4954 6: 454 4.7.0 is a temporary authentication failure; the credentials were right.
AUTH_TOO_MANY_SESSIONS: Final = "454 4.7.0 Too many sessions for this account, try again later"
TLS_FAILED: Final = "454 4.7.0 TLS negotiation failed"

# 5xx: permanent
AUTH_REQUIRED: Final = "530 5.7.0 Authentication required"
BAD_SEQUENCE: Final = "503 5.5.1 Bad sequence of commands"
AUTH_NOT_HERE: Final = "503 5.5.1 AUTH is not available on this port; use submission"
SYNTAX_ADDRESS: Final = "501 5.1.3 Bad address syntax"
AUTH_SYNTAX: Final = "501 5.5.2 Cannot decode authentication data"
AUTH_LINE_TOO_LONG: Final = "500 5.5.6 Authentication exchange line is too long"  # RFC 4954 6
AUTH_ABORTED: Final = "501 5.7.0 Authentication aborted"
AUTH_CANCELLED: Final = "501 5.7.0 Auth aborted"  # the client sent "*" (RFC 4954 4)
AUTH_NOT_BASE64: Final = "501 5.5.2 Can't decode base64"
AUTH_MECHANISM: Final = "504 5.5.4 Unrecognized authentication mechanism"
AUTH_FAILED: Final = "535 5.7.8 Authentication credentials invalid"
# RFC 4422 3.4.1: a client that may not act as the authorization identity it asked for fails the
# exchange; RFC 4954 6 gives 535 5.7.8 for a failed exchange.
AUTHZ_REFUSED: Final = "535 5.7.8 Not authorized to act as that identity"
UNKNOWN_USER: Final = "550 5.1.1 No such user here"
RELAY_DENIED: Final = "550 5.7.1 Relaying denied"
SENDER_NOT_OWNED: Final = "553 5.7.1 Sender address not owned by authenticated user"
NULL_SENDER_SUBMISSION: Final = "553 5.7.1 Authenticated users must use their own address"
# RFC 3463 X.2.3: a per-mailbox length limit (here the whole quota) the message exceeds, a
# permanent failure; RFC 1870 6.1 answers limits that waiting cannot lift with 552.
MESSAGE_OVER_QUOTA: Final = "552 5.2.3 Message is larger than the recipient's mailbox quota"
# RFC 3207 4: no TLS inside TLS; the command is out of sequence (RFC 5321 4.2.4).
TLS_ALREADY_ACTIVE: Final = "503 5.5.1 TLS already active"
# Submission: the header's claims about who wrote and sent the message (RFC 5322 3.6.2, RFC 6409
# 8: the MSA may check them). RFC 3463 X.6.0 for content it cannot use, X.7.1 for a refusal.
HEADER_TOO_LARGE: Final = "552 5.3.4 Message header too large"
HEADER_MALFORMED: Final = (
    "550 5.6.0 Malformed message header: each line must be a field or a continuation, with CRLF"
)
HEADER_NO_FROM: Final = "550 5.6.0 Message has no From: header"
HEADER_FROM_TWICE: Final = "550 5.6.0 Message has more than one From: header"
HEADER_SENDER_TWICE: Final = "550 5.6.0 Message has more than one Sender: header"
HEADER_BAD_FROM: Final = "550 5.6.0 Cannot parse the From: header"
HEADER_BAD_SENDER: Final = "550 5.6.0 Cannot parse the Sender: header"
HEADER_NEED_SENDER: Final = "550 5.6.0 A From: header with several addresses needs a Sender: header"


def header_sender_refused(address: str, field: str) -> str:
    """`address` (normalized, so without control characters) in `field` is not the user's."""
    return f"550 5.7.1 {field}: <{address}> is not an address of the authenticated user"


IDLE_TIMEOUT: Final = "421 4.4.2 Idle timeout, closing"
# RFC 3463 4.4.2 "bad connection": the data came slower than the node's minimum data rate.
DATA_TOO_SLOW: Final = "421 4.4.2 Data arriving too slowly, closing"
# DATA, in aiosmtpd's words (RFC 5321 4.5.3.1.6 for lines, RFC 1870 for size)
NEED_RCPT: Final = "503 5.5.1 Error: need RCPT command"
DATA_SYNTAX: Final = "501 5.5.4 Syntax: DATA"
LINE_TOO_LONG: Final = "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)"
DATA_TOO_BIG: Final = "552 5.3.4 Error: Too much mail data"

# Detail for replies written without an enhanced code (aiosmtpd's own), by reply code.
# RFC 2034 3: once ENHANCEDSTATUSCODES is advertised, every 4xx/5xx reply carries one.
_DETAIL_BY_CODE: Final = {
    "421": "4.3.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.7.0",
    "555": "5.5.4",
}
# Success replies are rewritten only by exact text: the greeting and the answers to HELO/EHLO
# carry no code (RFC 2034 3), and a reply's text alone does not say which command it answers.
_SUCCESS: Final = {
    "250 OK": "250 2.0.0 OK",
    "221 Bye": "221 2.0.0 Bye",
    "220 Ready to start TLS": "220 2.0.0 Ready to start TLS",
}
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def for_wire(reply: str) -> str:
    """One reply line as it may be sent: no control characters, with an enhanced status code.

    aiosmtpd echoes a client's unknown command into its reply, NUL and bare CR included; those
    never go back on the wire."""
    reply = _CONTROL.sub("?", reply)
    if reply in _SUCCESS:
        return _SUCCESS[reply]
    code, sep, text = reply[:3], reply[3:4], reply[4:]
    if sep != " " or code[:1] not in ("4", "5") or _ENHANCED.match(text):
        return reply
    detail = _DETAIL_BY_CODE.get(code, f"{code[0]}.0.0")
    return f"{code} {detail} {text}"
