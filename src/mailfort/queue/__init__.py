"""The delivery queue: leasing, retry schedule, and the workers that drain it.

Must not import: `server/`.
"""
