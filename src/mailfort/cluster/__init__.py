"""The cluster: nodes that share one store, none owning any mail.

Owns: membership (`membership`: register, heartbeat, learn of a drain, leave), the node table as
operators see it (`status`), and the POP3 maildrop lock across nodes (`maildrop`).
May import: `store/`. Must not import: `server/` internals (the node wires these in).
"""
