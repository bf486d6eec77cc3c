"""The bounded chaos campaign `make test` runs: a fixed seed, one fault of each kind first (node
kill, pause, graceful restart, drain, partition from the database and from the remote MX, clock
jump, database restart and failover to its synchronous standby), then a seeded mix, for about a
minute under MX, submission, IMAP and POP3 load; the checker must find nothing.

The long campaign is the same code: `python -m tests.chaos.campaign --seconds 3600 --seed N`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.campaign.nemesis import DB_FAULTS, NODE_FAULTS
from tests.chaos.campaign.netns import missing_tools
from tests.chaos.campaign.run import Settings, run
from tests.chaos.pgha import unavailable_reason

pytestmark = [pytest.mark.slow]

# Under /tmp: the PostgreSQL servers run as `postgres`, who cannot enter pytest's own tmp dirs.
WHERE = Path("/tmp/mailfort-campaign-test")


@pytest.mark.timeout(900)
def test_a_seeded_campaign_finds_no_violation() -> None:
    reason = unavailable_reason() or ", ".join(missing_tools())
    if reason:
        pytest.skip(f"a campaign cannot run here: {reason}")
    # 54 s: seed 12's schedule is the first 11 faults of its 80-s one (a schedule is cut at
    # `seconds`, not drawn anew): the tour of all nine kinds (over by 42 s, with a pause, a drain
    # and a kill at once), then a clock jump and a pause together; the last heals at 48 s, and
    # 6 s of load follow, as after the 80-s run's last fault. The long campaign is for the mix.
    result = run(Settings(seed=12, seconds=54.0, every=2.5, tour=True), WHERE)
    print("\n" + result.text())
    assert not result.violations, result.text()
    faults = result.figures["faults"]
    assert set(faults) == {*NODE_FAULTS, *DB_FAULTS}, faults
    assert not result.figures["nemesis errors"]
    done = {key for key, n in result.figures["operations"].items() if n}
    for kind in ("send", "submit", "append", "store", "move", "expunge", "pop3-dele", "pop3-quit"):
        assert f"{kind}:ok" in done, (kind, result.figures["operations"])
