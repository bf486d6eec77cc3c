"""Trust: what makes our mail believed by others, and theirs checked by us.

Owns: DKIM keys and signing (RFC 6376, RFC 8463), ARC sealing of forwarded mail (RFC 8617), SRS
rewriting of forwarded envelope senders, and the checks of incoming mail at the MX: SPF
(RFC 7208), DKIM verification, DMARC (RFC 7489) and ARC verification, summed up in one
Authentication-Results header (RFC 8601) and a verdict (accept, file to Junk, refuse).

May import: `mail/`, the store's role interfaces (types), the leaves, dnspython, dkimpy.
Must not import: `server/`, `queue/`, `delivery/`, a store engine (tests/unit/test_layers.py).
"""
