"""The mail domain: what a message and its addresses are, whatever protocol carried them.

Holds: addresses as mailfort compares them (`address`), who is local and who may send as whom
(`directory`), the originator fields (`originator`), trace fields (`trace`), one SMTP
transaction made into one store transaction (`accept`), delivery status notifications (`dsn`),
and a MIME tree over the stored bytes (`mime`). IMAP's views of that tree (SEARCH keys, FETCH
sections) live in `protocol/imap/`, beside the command types they evaluate.

May import: the store's role interfaces and the leaves (`errors`, `metrics`, `network`).
Must not import: `protocol/`, `server/`, a store engine, `queue/`, `delivery/`.

Promises: the bytes of a message are never rewritten, only read (`mime` parses offsets into the
stored bytes); acceptance writes the message, its local copies and its queue items in one
transaction, or nothing.
"""
