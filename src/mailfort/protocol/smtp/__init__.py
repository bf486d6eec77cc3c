"""SMTP without I/O: reply constants (`replies`) and the DATA state machine (`data`).

Used by the server (aiosmtpd, wrapped in `server/smtp.py`) and the client. Like all of
`protocol/`, it must not import asyncio, sockets, the store or `server/`.
"""
