"""Well-known answers on the http listener for other machines and mail clients.

Owns: the MTA-STS policy of our domains (RFC 8461), client autoconfiguration (Thunderbird's
config-v1.1.xml, Microsoft Autodiscover POX) and ACME HTTP-01 challenge answers; each module gives
Starlette routes that the node adds to the status web's app.

May import: `config`, `mail/`, `trust/`, `certs/`, the store's role interfaces (types), the
leaves, Starlette. Must not import: `server/`, `status/`, a store engine
(tests/unit/test_layers.py).
"""
