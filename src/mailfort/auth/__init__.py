"""Authentication: password hashing and verification, and the throttle on failed logins.

Shared by every protocol that logs users in (submission, IMAP, POP3, the web).
Must not import: `server/` or protocol cores.
"""
