"""SMTP constants shared by the server (aiosmtpd, wrapped in `server/smtp.py`) and the client."""
