"""Sans-IO protocol cores and protocol constants.

Must not import: asyncio, sockets, `store/`, `server/`. A test enforces this.
"""
