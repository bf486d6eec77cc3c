"""The mail domain: addresses, recipients and their resolution, trace headers, acceptance.

Must not import: `server/` or store engines (only the `store.api` interface).
"""
