"""The mail domain: what a message and its addresses are, whatever protocol carried them.

Holds: addresses as mailfort compares them (`address`), who is local and who may send as whom
(`directory`), the originator fields (`originator`), trace fields (`trace`), one SMTP
transaction made into one store transaction (`accept`), delivery status notifications (`dsn`),
a MIME tree over the stored bytes (`mime`), and IMAP's views of that tree: SEARCH keys
evaluated against a message (`search`) and FETCH body sections (`sections`).

May import: the store's role interfaces and the leaves (`errors`, `metrics`, `network`);
`search` and `sections` take the parsed SEARCH keys and sections of `protocol/imap/commands`
as types (the one edge back up, listed in tests/unit/test_layers.py). Must not import:
`server/`, a store engine, `queue/`, `delivery/`.

Promises: the bytes of a message are never rewritten, only read (`mime` parses offsets into the
stored bytes); acceptance writes the message, its local copies and its queue items in one
transaction, or nothing.
"""
