"""Capacity planning: measured costs, a workload model, closed forms and a simulator.

Owns:
- the models: the profile (`profile.py`: what one node costs per message, login, fetch,
  delivery, measured on a named machine) and the workload (`workload.py`: mailboxes, rates,
  senders' retry schedules, failure scenarios, targets); `demand.py` prices one with the other;
- the closed forms (`queueing.py`: Erlang C, Little's law, drain times; `sizing.py`: the fewest
  nodes for the targets) and the discrete-event simulator (`simulate.py`, SimPy);
- the plan (`plan.py`) and its reports (`report.py` text and JSON, `plots.py` HTML with
  matplotlib, `units.py`);
- the rolling-upgrade schedule (`upgrade.py`) and a running cluster's live margin
  (`margin.py`, computed by `status/margin.py`);
- the measurement (`measure.py`): a node started from outside (`benchnode.py`), driven by load
  clients (`smtpwire.py`, `mailclients.py`), its CPU and memory from /proc (`procstat.py`),
  its `/metrics` read as a client (`promtext.py`, `frommetrics.py`), the machine it runs on
  (`machine.py`), a CPU quota (`cgroup.py`).

May import: the leaves (`metrics.py` for the names it reads), its own models, stdlib, SimPy,
matplotlib (plots only, imported late). Must not import: `server/`, `queue/`, `store/` engines,
`node.py` — the planner runs on a laptop with no store, and the measurement drives a node from
outside, as a client would (tests/unit/test_layers.py).
"""
