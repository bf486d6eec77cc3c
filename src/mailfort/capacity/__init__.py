"""Capacity planning: measured costs, a workload model, closed forms and a simulator.

Owns: the profile (`profile.py`: what one node costs per message, login, fetch, delivery, as
measured on a named machine), the workload (`workload.py`: mailboxes, rates, senders' retry
schedules, failure scenarios, targets), the closed forms (`queueing.py`: Erlang C, Little's law,
drain times), the discrete-event simulator (`simulate.py`, SimPy), the planner (`plan.py`), its
reports (`report.py`, `plots.py`), the rolling-upgrade schedule (`upgrade.py`), the live margin
of a running cluster (`margin.py`) and the measurement itself (`measure.py`).

May import: the leaves (`metrics.py` for the names it reads), its own models, stdlib, SimPy,
matplotlib (plots only, imported late). Must not import: `server/`, `queue/`, `store/` engines,
`node.py` — the planner runs on a laptop with no store, and the measurement drives a node from
outside, as a client would (tests/unit/test_layers.py).
"""
