"""The IMAP server: asyncio connections around the sans-IO core, and the commands run on the store.

Holds: the connection loop with its limits and timeouts (`connection`); one session's state and
the untagged updates it owes (`session`); the one table that routes each command to its
handler in the states that allow it, and the translation of store errors into answers
(`dispatch`); the handlers, grouped by the state they are allowed in (`anystate`, `login`,
`mailboxes`, `messages`); FETCH rendering (`fetch`), the selected mailbox's sequence numbers
(`selected`), mailbox names and LIST patterns (`names`), flags (`flags`), per-node caches
(`cache`).

May import: `mailfort.protocol.imap` (for every octet it sends: answers and responses are
named there, not typed here), the store through its interface (`mailfort.store.api`), `mail/`,
`auth/`, `status/` notices, and the shared parts of `mailfort.server`. Must not talk to a store
engine directly.

Promises: a command gets exactly one tagged answer, or the session ends with an untagged BYE
(a write whose outcome cannot be reported); a command outside its states, or a failure of the
store, is an answer (BAD, NO [UNAVAILABLE]), never a crash; a client that does not read stalls
only itself; memory per session is bounded (literals spooled, FETCH and SEARCH in batches).
"""
