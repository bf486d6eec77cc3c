"""What the server answers, by name: response codes, tagged answers and untagged status lines.

Every NO, BAD and BYE mailfort sends is named here once, with its response code (RFC 9051 7.1,
RFC 5530) and its text, so a handler reads `return answers.no_such_mailbox(name)` and a change of
wording is made in one place. Tagged answers are `Answer` values the server turns into a line
with `Answer.line(tag)`; untagged status lines (`* BYE ...`, `* OK [CLOSED] ...`) are octets.
Data responses (`* STATUS`, `* LIST`, `* FETCH` ...) are written by `response`.

The texts are the wire texts: clients and tests see them as they are written here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from mailfort.protocol.imap import response


class Code(enum.StrEnum):
    """Response codes (RFC 9051 7.1; RFC 5530 3; the extension that adds each, where it is one)."""

    ALERT = "ALERT"  # the client must show the text to its user
    ALREADYEXISTS = "ALREADYEXISTS"
    AUTHENTICATIONFAILED = "AUTHENTICATIONFAILED"
    AUTHORIZATIONFAILED = "AUTHORIZATIONFAILED"
    BADCHARSET = "BADCHARSET"
    CANNOT = "CANNOT"  # the operation violates a rule of the server, and always will
    CAPABILITY = "CAPABILITY"
    CLIENTBUG = "CLIENTBUG"
    CLOSED = "CLOSED"  # RFC 7162 3.2.11: the previous mailbox is closed
    EXPUNGEISSUED = "EXPUNGEISSUED"
    LIMIT = "LIMIT"  # a server-imposed limit, here on one account's sessions
    NONEXISTENT = "NONEXISTENT"
    NOPERM = "NOPERM"
    OVERQUOTA = "OVERQUOTA"
    PRIVACYREQUIRED = "PRIVACYREQUIRED"
    READ_ONLY = "READ-ONLY"
    READ_WRITE = "READ-WRITE"
    SERVERBUG = "SERVERBUG"
    TOOBIG = "TOOBIG"  # RFC 7889 4
    TRYCREATE = "TRYCREATE"
    UNAVAILABLE = "UNAVAILABLE"  # a temporary failure: the client should try again later
    UNKNOWN_CTE = "UNKNOWN-CTE"  # RFC 3516 4.3
    USEATTR = "USEATTR"  # RFC 6154 6


_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f]+")  # as `response` cleans status texts


@dataclass(frozen=True, slots=True)
class Answer:
    """The tagged answer of a command: `tag status [code] text`."""

    status: str = "OK"
    text: str = "done"
    code: str | None = None

    def line(self, tag: str) -> bytes:
        """The tagged line. A text that quotes the client (a mailbox name it sent as a literal)
        may hold CR or LF: controls become spaces, so no text can end the line early."""
        text = self.text
        if _CONTROLS.search(text):
            text = _CONTROLS.sub(" ", text)
        code = f"[{self.code}] " if self.code else ""
        return f"{tag} {self.status} {code}{text}\r\n".encode("utf-8", "replace")


def ok(text: str, code: str | None = None) -> Answer:
    return Answer("OK", text, code)


def completed(command: str) -> Answer:
    """`OK SELECT completed`; `command` as the client named it (`UID FETCH`)."""
    return Answer("OK", f"{command} completed")


def no(text: str, code: str | None = None) -> Answer:
    return Answer("NO", text, code)


def bad(text: str) -> Answer:
    """The client broke the protocol (a malformed argument, a command out of place)."""
    return Answer("BAD", text)


# -- any state --------------------------------------------------------------------------------
def not_supported(command: str) -> Answer:
    return bad(f"{command} is not supported")


def not_allowed(command: str, state: str) -> Answer:
    """RFC 9051 6: a command outside the states it is defined for is a protocol error."""
    return bad(f"{command} is not allowed in the {state} state")


BUSY: Final = Answer("NO", "server busy, try again later", Code.UNAVAILABLE)
TRY_LATER: Final = Answer("NO", "temporarily unavailable, try again later", Code.UNAVAILABLE)
OVER_QUOTA: Final = Answer("NO", "quota exceeded", Code.OVERQUOTA)
LITERAL_TOO_BIG: Final = Answer("NO", "literal too large", Code.TOOBIG)  # RFC 9051 7.5

# -- not authenticated (RFC 9051 6.2) ------------------------------------------------------------
LOGIN_NEEDS_TLS: Final = Answer("NO", "log in after STARTTLS", Code.PRIVACYREQUIRED)
AUTHENTICATE_NEEDS_TLS: Final = Answer("NO", "authenticate after STARTTLS", Code.PRIVACYREQUIRED)
LOGIN_FAILED: Final = Answer("NO", "invalid credentials", Code.AUTHENTICATIONFAILED)
LOGINS_THROTTLED: Final = Answer("NO", "too many failed logins, try again later", Code.UNAVAILABLE)
TOO_MANY_SESSIONS: Final = Answer(
    "NO", "too many sessions for this account, try again later", Code.LIMIT
)
OTHER_USER: Final = Answer("NO", "cannot act for another user", Code.AUTHORIZATIONFAILED)
MECHANISM_UNSUPPORTED: Final = Answer("NO", "unsupported mechanism; use PLAIN", Code.CANNOT)
AUTHENTICATE_TIMED_OUT: Final = bad("authentication timed out")
AUTHENTICATE_CANCELLED: Final = bad("authentication cancelled")  # RFC 9051 6.2.2: "*"
INVALID_BASE64: Final = bad("invalid base64")
MALFORMED_PLAIN: Final = bad("malformed PLAIN credentials")  # RFC 4616 2
TLS_ACTIVE: Final = bad("TLS is already active")
BEGIN_TLS: Final = ok("begin TLS negotiation now")


def logged_in(capabilities: str) -> Answer:
    """RFC 9051 6.2.3: the capabilities after login may ride in the tagged OK."""
    return ok("logged in", f"{Code.CAPABILITY} {capabilities}")


# -- IDLE (RFC 2177) ---------------------------------------------------------------------------
IDLE_MAILBOX_GONE: Final = Answer("NO", "mailbox gone")
IDLE_TIMED_OUT: Final = Answer("NO", "idle timed out")
IDLE_EXPECTED_DONE: Final = bad("expected DONE")
IDLE_SHUT_DOWN: Final = ok("IDLE terminated by shutdown")

# -- mailboxes (RFC 9051 6.3) --------------------------------------------------------------------
NO_SUCH_MAILBOX: Final = Answer("NO", "no such mailbox", Code.NONEXISTENT)
NO_SUCH_QUOTA_ROOT: Final = Answer("NO", "no such quota root", Code.NONEXISTENT)
MAILBOX_EXISTS: Final = Answer("NO", "mailbox already exists", Code.ALREADYEXISTS)
INBOX_EXISTS: Final = Answer("NO", "INBOX always exists", Code.ALREADYEXISTS)
INBOX_UNDELETABLE: Final = Answer("NO", "INBOX cannot be deleted", Code.CANNOT)
ONE_SPECIAL_USE: Final = Answer("NO", "one special use per mailbox", Code.USEATTR)
QUOTA_BY_PROVIDER: Final = Answer("NO", "quotas are set by the provider", Code.NOPERM)


def no_such_mailbox(name: str) -> Answer:
    return no(f"no mailbox {name}", Code.NONEXISTENT)


def nonexistent(text: str) -> Answer:
    """NO [NONEXISTENT] with the store's own words for what is missing."""
    return no(text or NO_SUCH_MAILBOX.text, Code.NONEXISTENT)


def already_exists(name: str) -> Answer:
    return no(f"{name} already exists", Code.ALREADYEXISTS)


def cannot(text: str) -> Answer:
    """A name or value the server's rules refuse (e.g. an invalid mailbox name)."""
    return no(text, Code.CANNOT)


def unsupported_special_use(use: str) -> Answer:
    return no(f"unsupported special use {use}", Code.USEATTR)


def unknown_status_item(item: str) -> Answer:
    return bad(f"unknown STATUS item {item}")


def opened(*, readonly: bool) -> Answer:
    """The tagged OK of SELECT and EXAMINE (RFC 9051 6.3.2, 6.3.3)."""
    if readonly:
        return ok("EXAMINE completed", Code.READ_ONLY)
    return ok("SELECT completed", Code.READ_WRITE)


# -- APPEND (RFC 9051 6.3.12, RFC 4315 3) ------------------------------------------------------
MESSAGE_TOO_BIG: Final = Answer("NO", "message too large", Code.TOOBIG)
EMPTY_MESSAGE: Final = Answer("NO", "empty message", Code.CANNOT)


def try_create(name: str) -> Answer:
    """The target of APPEND, COPY or MOVE does not exist; creating it may help (9051 7.1)."""
    return no(f"no mailbox {name}", Code.TRYCREATE)


def appended(uidvalidity: int, uids: str) -> Answer:
    return ok("APPEND completed", f"APPENDUID {uidvalidity} {uids}")


# -- the selected state (RFC 9051 6.4) -----------------------------------------------------------
MAILBOX_READ_ONLY: Final = Answer("NO", "mailbox is read-only", Code.READ_ONLY)
EXPUNGE_ISSUED: Final = Answer("NO", "some messages were expunged meanwhile", Code.EXPUNGEISSUED)
UNKNOWN_TRANSFER_ENCODING: Final = Answer(
    "NO", "unknown content-transfer-encoding", Code.UNKNOWN_CTE
)
# RFC 9051 6.4.4: the charsets the server does support ride in the code.
BAD_CHARSET: Final = Answer("NO", "unsupported charset", f"{Code.BADCHARSET} (UTF-8 US-ASCII)")


def copyuid(uidvalidity: int, source: str, target: str) -> str:
    """The COPYUID code (RFC 4315 3): source and target UID sets in the same order."""
    return f"COPYUID {uidvalidity} {source} {target}"


def store_modified(numbers: str) -> Answer:
    """RFC 7162 3.1.3: UNCHANGEDSINCE failed for `numbers`; the others were stored."""
    return ok("conditional STORE failed for some messages", f"MODIFIED {numbers}")


# -- untagged status lines (RFC 9051 7.1) --------------------------------------------------------
def bye(text: str, code: str | None = None) -> bytes:
    return response.untagged_status("BYE", text, code)


BYE_LOGOUT: Final = bye("logging out")
BYE_SHUTDOWN: Final = bye("server shutting down, please reconnect", Code.UNAVAILABLE)
BYE_BUSY: Final = bye("server busy, try again later", Code.UNAVAILABLE)
BYE_CONNECTIONS: Final = bye("too many connections from your address", Code.UNAVAILABLE)
BYE_SERVERBUG: Final = bye("internal error, please reconnect", Code.SERVERBUG)
BYE_AUTOLOGOUT: Final = bye("autologout; idle for too long")  # RFC 9051 5.4
BYE_LITERAL_TOO_SLOW: Final = bye("literal data arriving too slowly")
BYE_TOO_MANY_UNAUTHENTICATED: Final = bye("too many commands without logging in")
BYE_INVALID_INPUT: Final = bye("too much invalid input")
# RFC 9051 7.1: BYE when the selected mailbox is deleted under the session.
BYE_MAILBOX_DELETED: Final = bye("the selected mailbox was deleted", Code.CLIENTBUG)
# A write that may have committed: neither OK nor NO is true, so no tagged answer follows.
BYE_IN_DOUBT: Final = bye("whether that was done is unknown: reconnect", Code.UNAVAILABLE)
# A write that committed but whose untagged answers cannot be sent (RFC 9051 6.4.3).
BYE_UNREPORTED: Final = bye("done, but it cannot be shown now: reconnect", Code.UNAVAILABLE)

MAILBOX_CLOSED: Final = response.untagged_status("OK", "previous mailbox closed", Code.CLOSED)


def greeting(hostname: str, capabilities: str) -> bytes:
    """RFC 9051 7.1.1: the greeting may carry the capabilities, saving a round trip."""
    return response.untagged_status(
        "OK", f"{hostname} mailfort IMAP ready", f"{Code.CAPABILITY} {capabilities}"
    )


def permanent_flags(flags: Sequence[str]) -> bytes:
    """RFC 9051 7.1: the flags a client may change for good; none in a read-only mailbox."""
    code = "PERMANENTFLAGS (" + " ".join(flags) + ")"
    return response.untagged_status("OK", "flags permitted" if flags else "read-only", code)


def uidvalidity(value: int) -> bytes:
    return response.untagged_status("OK", "UIDs valid", f"UIDVALIDITY {value}")


def uidnext(value: int) -> bytes:
    return response.untagged_status("OK", "predicted next UID", f"UIDNEXT {value}")


def highestmodseq(value: int) -> bytes:
    return response.untagged_status("OK", "highest modseq", f"HIGHESTMODSEQ {value}")


def first_unseen(seq: int) -> bytes:
    """RFC 3501 6.3.1 (IMAP4rev1 only): the sequence number of the first unseen message."""
    return response.untagged_status("OK", "first unseen", f"UNSEEN {seq}")


def alert(text: str) -> bytes:
    """`* OK [ALERT] text`: RFC 9051 7.1, the client must show it to its user."""
    return response.untagged_status("OK", text, Code.ALERT)


def moved(copyuid_code: str) -> bytes:
    """RFC 6851 4.3: MOVE sends COPYUID in an untagged OK, before the EXPUNGEs."""
    return response.untagged_status("OK", "moved", copyuid_code)


READY_FOR_LITERAL: Final = response.continuation("Ready for literal data")
IDLING: Final = response.continuation("idling")
EMPTY_CHALLENGE: Final = response.continuation(b"")  # RFC 9051 6.2.2: PLAIN needs none
