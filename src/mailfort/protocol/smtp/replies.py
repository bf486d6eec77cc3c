"""SMTP replies with enhanced status codes (RFC 5321 4.2, RFC 3463), named once; and the
enhanced code read back from a reply, for the client (`enhanced_status`).

The texts of the session's own answers (syntax errors, sequence errors, HELP) are the ones
aiosmtpd used to send, with the enhanced code that was added to them on the way out: clients and
tests that read them see the same lines as before."""

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
TLS_NOT_AVAILABLE: Final = "454 4.7.0 TLS not available"
# RFC 3463 X.7.1 "delivery not authorized", temporary: the account's hourly sending bound.
SENDING_RATE_EXCEEDED: Final = "451 4.7.1 Sending rate for this account exceeded, try again later"

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


def dmarc_refused(domain: str) -> str:
    """RFC 7489 6.6.4: a p=reject failure is refused in the SMTP transaction. `domain` is the
    author's, reduced by the caller to letters, digits, dots and hyphens."""
    return f"550 5.7.1 Message refused: it fails the DMARC policy (p=reject) of {domain}"


def dmarc_deferred(domain: str) -> str:
    """A DNS failure may have changed the DMARC verdict: the sender tries again (never a 5xx)."""
    return f"451 4.7.0 Cannot check the DMARC policy of {domain} now, try again later"


IDLE_TIMEOUT: Final = "421 4.4.2 Idle timeout, closing"
# RFC 3463 4.4.2 "bad connection": the data came slower than the node's minimum data rate.
DATA_TOO_SLOW: Final = "421 4.4.2 Data arriving too slowly, closing"
# The session's own answers (RFC 5321 4.2.2 codes; RFC 2034 3: with ENHANCEDSTATUSCODES every
# 4xx/5xx carries an enhanced code, and so do the 2xx answers to commands other than HELO/EHLO).
OK: Final = "250 2.0.0 OK"
BYE: Final = "221 2.0.0 Bye"
READY_FOR_TLS: Final = "220 2.0.0 Ready to start TLS"
CANNOT_VRFY: Final = "252 Cannot VRFY user, but will accept message and attempt delivery"
BAD_SYNTAX: Final = "500 5.5.2 Error: bad syntax"
COMMAND_TOO_LONG: Final = "500 5.5.2 Command line too long"
TOO_MANY_UNKNOWN: Final = "502 5.5.1 Too many unrecognized commands, goodbye."
EXPN_NOT_IMPLEMENTED: Final = "502 5.5.1 EXPN not implemented"
NEED_HELO: Final = "503 5.5.1 Error: send HELO first"
NEED_EHLO: Final = "503 5.5.1 Error: send EHLO first"
NESTED_MAIL: Final = "503 5.5.1 Error: nested MAIL command"
NEED_MAIL: Final = "503 5.5.1 Error: need MAIL command"
ALREADY_AUTHENTICATED: Final = "503 5.5.1 Already authenticated"
AUTH_NOT_ESMTP: Final = "500 5.5.2 Error: command 'AUTH' not recognized"
AUTH_NEEDS_TLS: Final = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_NO_MECHANISM: Final = "501 5.5.4 Not enough value"
AUTH_TOO_MANY_VALUES: Final = "501 5.5.4 Too many values"
AUTH_UNKNOWN_TYPE: Final = "504 5.5.4 Unrecognized authentication type"
MALFORMED_ADDRESS: Final = "553 5.1.3 Error: malformed address"
BODY_VALUES: Final = "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME"
SMTPUTF8_NO_VALUE: Final = "501 5.5.4 Error: SMTPUTF8 takes no arguments"
SIZE_OVER_LIMIT: Final = "552 5.3.4 Error: message size exceeds fixed maximum message size"
MAIL_PARAMS_UNKNOWN: Final = "555 5.5.4 MAIL FROM parameters not recognized or not implemented"
RCPT_PARAMS_UNKNOWN: Final = "555 5.5.4 RCPT TO parameters not recognized or not implemented"


def syntax(usage: str) -> str:
    """The answer to a command with bad arguments: its usage."""
    return f"501 5.5.4 Syntax: {usage}"


def unknown_command(verb: str) -> str:
    return for_wire(f'500 Error: command "{verb}" not recognized')


def too_many(verb: str) -> str:
    """A command sent more often than a session may (a per-command budget)."""
    return for_wire(f"421 4.7.0 {verb} sent too many times")


def could_not_vrfy(argument: str) -> str:
    return for_wire(f"502 Could not VRFY {argument}")


# DATA (RFC 5321 4.5.3.1.6 for lines, RFC 1870 for size)
NEED_RCPT: Final = "503 5.5.1 Error: need RCPT command"
DATA_SYNTAX: Final = "501 5.5.4 Syntax: DATA"
LINE_TOO_LONG: Final = "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)"
DATA_TOO_BIG: Final = "552 5.3.4 Error: Too much mail data"

# BDAT (RFC 3030 2)
DATA_AFTER_BDAT: Final = "503 5.5.1 Error: DATA after BDAT in one transaction; send RSET"
# RFC 3463 X.5.0: the client's stream cannot be followed (a BDAT without a size to count).
BDAT_LOST: Final = "421 4.5.0 Cannot tell where the BDAT data ends, closing"


def chunk_received(size: int) -> str:
    """The answer to a BDAT chunk that is not the last (RFC 3030 2: a 250 for each)."""
    return f"250 2.0.0 {size} octets received"


# Detail for a reply written without an enhanced code (a policy's, or one that echoes the
# client's words), by reply code.
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
# RFC 3463 2: class "." subject "." detail, at the start of the text after the reply code.
ENHANCED_CODE: Final = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def for_wire(reply: str) -> str:
    """One reply line as it may be sent: no control characters, with an enhanced status code.

    Some replies echo what the client sent (an unknown command, VRFY's argument), NUL and bare
    CR included; those never go back on the wire."""
    reply = _CONTROL.sub("?", reply)
    if reply in _SUCCESS:
        return _SUCCESS[reply]
    code, sep, text = reply[:3], reply[3:4], reply[4:]
    if sep != " " or code[:1] not in ("4", "5") or ENHANCED_CODE.match(text):
        return reply
    detail = _DETAIL_BY_CODE.get(code, f"{code[0]}.0.0")
    return f"{code} {detail} {text}"


def enhanced_status(code: int, text: str) -> str:
    """The enhanced status of a server's reply (RFC 2034), its class forced to the reply
    code's; X.0.0 when the text carries none; 4.0.0 for a code out of protocol."""
    klass = code // 100
    match = ENHANCED_CODE.match(text.strip())
    if match and klass in (2, 4, 5):
        return f"{klass}.{match[2]}.{match[3]}"
    return f"{klass if klass in (2, 4, 5) else 4}.0.0"
