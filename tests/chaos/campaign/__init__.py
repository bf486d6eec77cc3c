"""A Jepsen-style chaos campaign: a cluster under mixed load, a seeded nemesis, a recorded
history of every operation, and a checker that judges the whole history and the final state.

`python -m tests.chaos.campaign --help` runs it for as long as you like;
`tests/chaos/test_campaign.py` runs a bounded one with a fixed seed in `make test`.
"""
