"""Authentication: one password login for every protocol that takes a password (submission,
IMAP, POP3, the web's `/account`), with what it is made of:

* `login.py` — the login itself: throttle, account read under the overload gate, password check,
  known networks, and the metrics of how it ended;
* `passwords.py` — argon2id hashing, and the `Verifier` that bounds checks per node and network;
* `throttle.py` — failed logins counted per address, network and account before the check;
* `known.py` — the networks each account logged in from (in the store, read through a cache).

May import the store's role interfaces, `metrics` and `network`; must not import `server/` or
protocol cores (the overload gate comes in as a `login.Gate`).
"""
