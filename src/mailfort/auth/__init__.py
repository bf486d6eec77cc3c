"""Authentication: one password login for every protocol that takes a password (submission,
IMAP, POP3, the web's `/account`), with what it is made of:

* `login.py` — the login itself: throttle, account read under the overload gate, password check,
  known networks, and the metrics of how it ended;
* `passwords.py` — argon2id hashing, and the `Verifier` that bounds checks per node and network;
* `throttle.py` — failed logins counted per address, network and account before the check;
* `known.py` — the networks each account logged in from (in the store, read through a cache).

May import: the store's role interfaces, `mail/` (addresses) and the leaves (`errors`,
`metrics`, `network`), argon2. Must not import: `server/`, protocol cores, a store engine,
`status/` (the overload gate comes in as a `login.Gate`; tests/unit/test_layers.py).

Promises: the same login on every protocol; an unknown account costs the same time as a known
one and gets the same answer (no oracle); failed logins are counted per address, network and
account before the password is checked; password checks per node and network are bounded.
"""
