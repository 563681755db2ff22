"""kill -9 of a writer process at random moments loses nothing it acknowledged.

Each round starts a writer process (``scripts/kill9_writer.py``: several threads creating
sessions and saving step after step, each acknowledgement flushed to a file before the
writer goes on), kills it with SIGKILL after a random number (6 to 40) of acknowledged
saves plus up to 50 ms, and then loads every session: each acknowledged checkpoint (or a
later one) is there, and whole: history, context, plan, phase and step all from the same
save. After the last round a new process checks every session once more. On SQLite
``PRAGMA integrity_check`` must say ``ok`` after every kill. The sessions live on from
round to round (the next writer takes over the killed writer's lapsed leases), so later
rounds also prove that takeover.

The next writer is started (and imports) while the current round runs, and waits for a line
on stdin; so a round costs the writing time plus the checks, not an interpreter start.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from actors import SessionManager, create_session_manager
from tests.robustness._support import SCRIPTS, child_env, spawn, stop, wait_until
from tests.robustness.scripts.kill9_writer import MODE, expected_state

WRITER = str(SCRIPTS / "kill9_writer.py")
#: Each round is killed after at least this many acknowledged saves.
MIN_ACKS_PER_ROUND = 6


@dataclass
class Writer:
    """One writer process and the files its output goes to."""

    process: subprocess.Popen[str]
    out_path: Path
    err_path: Path
    files: list[IO[str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Its acknowledgements so far."""
        return self.out_path.read_text().splitlines()

    def close(self) -> None:
        """Kill it (if still running) and close its files."""
        stop(self.process)
        for file in self.files:
            file.close()


@dataclass
class Ledger:
    """What every writer acknowledged, over all rounds."""

    acked: dict[str, int] = field(default_factory=dict)
    acks: int = 0
    rounds: int = 0
    ahead: int = 0

    def record(self, lines: list[str]) -> None:
        """Add one killed writer's acknowledgements (a torn last line was never acked)."""
        for line in lines:
            match line.split():
                case ["created", session_id]:
                    self.acked.setdefault(session_id, 0)
                case ["ack", session_id, step]:
                    self.acked[session_id] = max(self.acked.get(session_id, 0), int(step))
                    self.acks += 1


def _acks(writer: Writer) -> int:
    return sum(line.startswith("ack ") for line in writer.lines())


def _start(database_url: str, tmp_path: Path, number: int) -> Writer:
    out_path, err_path = tmp_path / f"writer{number}.out", tmp_path / f"writer{number}.err"
    out, err = out_path.open("w"), err_path.open("w")
    process = spawn(
        [WRITER, database_url, str(number)],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=err,
        env=child_env(),
    )
    return Writer(process, out_path, err_path, [out, err])


def _check(manager: SessionManager, ledger: Ledger) -> None:
    stored_ids = {row["session_id"] for row in manager.list_sessions(mode=MODE, limit=10_000)}
    missing = set(ledger.acked) - stored_ids
    assert not missing, f"acknowledged sessions lost: {sorted(missing)}"
    for session_id in stored_ids:
        state = manager.load(session_id)
        step = state["current_step"] or 0
        acked = ledger.acked.get(session_id, 0)
        assert step >= acked, f"{session_id}: acknowledged step {acked}, stored {step}"
        ledger.ahead += step > acked  # committed, killed before it printed the ack
        expected = expected_state(session_id, step)
        loaded = {
            "history": state["conversation_history"],
            "context": state["context_variables"],
            "plan": state["plan_data"],
            "phase": state["current_phase"],
            "step": state["current_step"],
        }
        assert loaded == expected, f"{session_id} is not one whole checkpoint at step {step}"
        assert state["message_count"] == len(expected["history"])


def _integrity(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        connection.close()


def _kill_rounds(
    database_url: str, tmp_path: Path, rounds: int, sqlite_file: Path | None = None
) -> Ledger:
    ledger = Ledger()
    rng = random.Random(20240601)
    checker = create_session_manager(database_url)  # migrates first: writers only write
    writers: list[Writer] = []
    try:
        writers.append(_start(database_url, tmp_path, 0))
        for number in range(rounds):
            writer = writers[-1]
            writers.append(_start(database_url, tmp_path, number + 1))  # imports meanwhile
            assert writer.process.stdin is not None
            writer.process.stdin.write("go\n")
            writer.process.stdin.flush()
            wait_until(lambda w=writer: "ready" in w.lines(), timeout=30)  # type: ignore[misc]
            # The random moment: after a random number of acknowledgements (so a loaded
            # machine still writes enough to prove something), plus a random delay, while
            # the writer is mid-save on several threads.
            enough = rng.randint(MIN_ACKS_PER_ROUND, 40)
            wait_until(lambda w=writer, n=enough: _acks(w) >= n, timeout=30)  # type: ignore[misc]
            try:
                writer.process.wait(rng.uniform(0.0, 0.05))
            except subprocess.TimeoutExpired:
                writer.process.send_signal(signal.SIGKILL)
            assert writer.process.wait(10) == -signal.SIGKILL, writer.err_path.read_text()
            errors = writer.err_path.read_text()
            assert "Traceback" not in errors, errors
            ledger.record(writer.lines())
            ledger.rounds += 1
            if sqlite_file is not None:
                _integrity(sqlite_file)
            _check(checker, ledger)
    finally:
        for writer in writers:
            writer.close()
        checker.close()
    _verify_in_a_new_process(database_url, ledger)
    return ledger


def _verify_in_a_new_process(database_url: str, ledger: Ledger) -> None:
    """A fresh process (nothing cached) loads every session and checks it against the acks."""
    process = spawn(
        [WRITER, "verify", database_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        out, err = process.communicate(json.dumps(ledger.acked), timeout=60)
    finally:
        stop(process)
    assert process.returncode == 0, out + err
    word, sessions, lost, inconsistent = out.split()
    assert (word, lost, inconsistent) == ("verified", "0", "0"), out
    assert int(sessions) >= len(ledger.acked)  # a create may commit before its ack printed


@pytest.mark.slow
class TestKill9:
    """Every acknowledged save survives SIGKILL of its process, whole."""

    def test_sqlite(self, tmp_path: Path) -> None:
        """12 kills of a writer on one SQLite file: nothing acknowledged lost, file intact."""
        path = tmp_path / "kill9.db"
        ledger = _kill_rounds(f"sqlite+aiosqlite:///{path}", tmp_path, 12, sqlite_file=path)
        _report(ledger)

    @pytest.mark.postgres
    def test_postgresql(self, pg_url: str, tmp_path: Path) -> None:
        """10 kills of a writer on one PostgreSQL database: nothing acknowledged lost."""
        _report(_kill_rounds(pg_url, tmp_path, 10))


def _report(ledger: Ledger) -> None:
    assert ledger.acks >= ledger.rounds * MIN_ACKS_PER_ROUND
    print(  # noqa: T201 - the figures of the run, shown with -s
        f"kill9: {ledger.rounds} rounds, {len(ledger.acked)} sessions, {ledger.acks} acks,"
        f" {ledger.ahead} checks found a commit newer than its ack, 0 lost"
    )
