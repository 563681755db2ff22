"""One clock per database: on PostgreSQL a process whose clock runs ahead judges by the server's.

A second process whose clock (its machine's time, and so its manager's) runs 5 minutes
ahead shares the database with a live owner that renews its leases. Lease lapse and the
sweep's expiry are judged by PostgreSQL's ``clock_timestamp()`` (shifted only by an
injected clock's distance from the machine's time, zero here), so that process neither
takes the owner's session over nor expires its sessions early.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

from actors import create_session_manager
from tests.conftest import history

ROOT = Path(__file__).parents[2]

_SKEWED = """
import json, sys
from datetime import UTC, datetime, timedelta
import persistence._clock
from actors import SessionOwnedElsewhere, create_session_manager

AHEAD = timedelta(minutes=5)

def skewed():
    return datetime.now(UTC) + AHEAD

persistence._clock.system_now = skewed  # this machine's clock runs ahead, as the manager's
url, session_id = sys.argv[1], sys.argv[2]
result = {}
opts = dict(clock=skewed, instance_id="ahead", autostart=False, handoff_wait=0)
with create_session_manager(url, **opts) as b:  # a take, not a hand-off on demand
    try:
        b.checkpoint(session_id, [{"role": "user", "content": "taken"}], {}, "taken", 9)
        result["take"] = "taken"
    except SessionOwnedElsewhere as refused:
        result["take"] = f"refused: owned by {refused.owner}"
    result["sweep"] = b.sweep()
print(json.dumps(result), flush=True)
"""


class TestClockAhead:
    """A process 5 minutes ahead cannot take over or expire early (PostgreSQL)."""

    def test_no_takeover_and_no_early_expiry(self, pg_url: str) -> None:
        """The owner keeps its session (lease 30 s, session TTL 2 min); nothing expires."""
        owner = create_session_manager(
            pg_url, instance_id="owner", session_ttl=timedelta(minutes=2)
        )
        try:
            session_id = owner.create("copilot", {})
            assert owner.checkpoint(session_id, history(2), {"k": 1}, "mine", 1) == 2
            child = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(_SKEWED), pg_url, session_id],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
                check=False,
            )
            assert child.returncode == 0, child.stderr
            result = json.loads(child.stdout.splitlines()[-1])
            assert result["take"] == "refused: owned by owner"
            assert result["sweep"]["sessions_expired"] == 0
            info = owner.info(session_id)
            assert (info["status"], info["owner"], info["version"]) == ("active", "owner", 2)
            # The owner's next save is accepted: its lease and epoch are its own.
            assert owner.checkpoint(session_id, history(3), {"k": 2}, "mine", 2) == 3
        finally:
            owner.close()
