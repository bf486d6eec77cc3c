"""The delivery queue: leasing, retry schedule, and the workers that drain it.

Holds: the workers that lease queue items and deliver them, locally (`local_worker`) or to a
remote next hop (`remote_worker`), when to try again and when to give up or warn (`schedule`,
`retry`), whose fault a failed delivery is (`reach`), and the DSN a failure or a delay becomes
(`bounce`).

May import: the store's role interfaces, `mail/`, `delivery/`, `overload/` (breakers, retry
budgets) and the leaves. Must not import: `server/`, a store engine, `status/`, `node.py`
(tests/unit/test_layers.py).

Promises: an item is worked only under a lease (renewed while a remote delivery is in flight);
delivering an item and deleting it happen in one transaction, so a retry after a crash or a
takeover never delivers twice.
"""
