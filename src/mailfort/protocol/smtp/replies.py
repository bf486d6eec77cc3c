"""SMTP replies with enhanced status codes (RFC 5321 4.2, RFC 3463), named once."""

from __future__ import annotations

from typing import Final

# 2xx
SENDER_OK: Final = "250 2.1.0 Sender OK"
RECIPIENT_OK: Final = "250 2.1.5 Recipient OK"
AUTH_OK: Final = "235 2.7.0 Authentication successful"


def queued(queue_id: str) -> str:
    return f"250 2.0.0 OK queued as {queue_id}"


# 4xx: temporary, the sender retries
TOO_MANY_CONNECTIONS_NODE: Final = "421 4.3.2 Too many connections, try again later"
TOO_MANY_CONNECTIONS_IP: Final = "421 4.7.0 Too many connections from your address, try again later"
SESSION_TOO_LONG: Final = "421 4.4.2 Session time limit exceeded, closing"
SHUTTING_DOWN: Final = "421 4.3.2 Service shutting down, try again later"
STORE_UNAVAILABLE: Final = "451 4.3.0 Temporary failure, please try again later"
INTERNAL_ERROR: Final = "451 4.3.0 Internal error, please try again later"
TOO_MANY_RECIPIENTS: Final = "452 4.5.3 Too many recipients"
MAILBOX_FULL: Final = "452 4.2.2 Mailbox full"
AUTH_THROTTLED: Final = "454 4.7.0 Too many failed logins, try again later"

# 5xx: permanent
AUTH_REQUIRED: Final = "530 5.7.0 Authentication required"
BAD_SEQUENCE: Final = "503 5.5.1 Bad sequence of commands"
AUTH_NOT_HERE: Final = "503 5.5.1 AUTH is not available on this port; use submission"
SYNTAX_ADDRESS: Final = "501 5.1.3 Bad address syntax"
AUTH_SYNTAX: Final = "501 5.5.2 Cannot decode authentication data"
AUTH_ABORTED: Final = "501 5.7.0 Authentication aborted"
AUTH_MECHANISM: Final = "504 5.5.4 Unrecognized authentication mechanism"
AUTH_FAILED: Final = "535 5.7.8 Authentication credentials invalid"
UNKNOWN_USER: Final = "550 5.1.1 No such user here"
RELAY_DENIED: Final = "550 5.7.1 Relaying denied"
SENDER_NOT_OWNED: Final = "553 5.7.1 Sender address not owned by authenticated user"
NULL_SENDER_SUBMISSION: Final = "553 5.7.1 Authenticated users must use their own address"
