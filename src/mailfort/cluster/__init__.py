"""The cluster: nodes that share one store, none owning any mail.

Owns: membership (`membership`: register, heartbeat, learn of a drain, leave), the node table as
operators see it (`status`), the POP3 maildrop lock across nodes (`maildrop`), and the store's
clock as a node reckons it (`clock`).

May import: the store's role interfaces and the leaves. Must not import: `server/`, `queue/`,
`status/` or `node.py` (the node wires these in; tests/unit/test_layers.py).

Promises: everything a node knows about the others is read from the store, in the store's
clock; a node that stops heartbeating is dead to the others after a bounded time, and what it
held (leases, maildrop locks) becomes anyone's.
"""
