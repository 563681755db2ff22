"""Shutdown: with live actors the host process exits promptly, however it ends.

Each case runs in its own Python process with 40 live session actors (non-daemon threads)
and a deadline. The child prints ``time.monotonic()`` (a system-wide clock on Linux) when its
own work is over; the test takes the time the process was gone, so it measures exactly the
exit latency the library adds. Afterwards every acknowledged save is in the database and
no lease is left behind, so another process can take the sessions at once.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from actors import create_session_manager
from tests.robustness._support import child_env, spawn, stop

SESSIONS = 40
EXIT_DEADLINE = 5.0

_PROLOGUE = f"""
import asyncio, sys, time
from actors import create_session_manager

def history(n):
    return [{{"role": "user", "content": f"message {{i}}"}} for i in range(n)]

def work(manager):
    ids = []
    for n in range({SESSIONS}):
        sid = manager.create_session("copilot", {{"n": n}})
        assert manager.save_session_state(sid, history(3), {{"n": n}}, "execution", n)
        ids.append(sid)
    assert len(manager.live_sessions()) == {SESSIONS}
    print("ids", " ".join(ids), flush=True)
    return ids

def done():
    print("done", time.monotonic(), flush=True)
"""

ENDINGS = {
    "after-close": """
manager = create_session_manager(sys.argv[1])
work(manager)
manager.close()
done()
""",
    "unhandled-exception": """
manager = create_session_manager(sys.argv[1])
work(manager)
done()
raise RuntimeError("the host crashed with live actors")
""",
    "no-close-atexit": """
manager = create_session_manager(sys.argv[1])
work(manager)
done()
""",
    "sys-exit-code": """
manager = create_session_manager(sys.argv[1])
work(manager)
done()
sys.exit(3)
""",
    "exception-in-with-block": """
with create_session_manager(sys.argv[1]) as manager:
    work(manager)
    done()
    raise KeyError("inside the with block")
""",
    "inside-asyncio-run-no-close": """
async def main():
    manager = create_session_manager(sys.argv[1])
    first = work(manager)[0]
    assert await manager.asave_session_state(first, history(4), {"n": 0}, "async", 1)
    done()
asyncio.run(main())
""",
    "exception-in-a-thread": """
import threading
manager = create_session_manager(sys.argv[1])
work(manager)
def boom():
    raise ValueError("a host thread died")
thread = threading.Thread(target=boom)
thread.start()
thread.join()
done()
""",
}

EXIT_CODES = {
    "unhandled-exception": 1,
    "sys-exit-code": 3,
    "exception-in-with-block": 1,
}


class TestShutdown:
    """However the host process ends, it ends at once."""

    @pytest.mark.slow
    @pytest.mark.parametrize("ending", list(ENDINGS))
    def test_process_exits_promptly(self, ending: str, tmp_path: Path) -> None:
        """The process ends within 5 s of its last line, every save durable, no lease held."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
        script = textwrap.dedent(_PROLOGUE) + textwrap.dedent(ENDINGS[ending])
        process = spawn(
            ["-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
        )
        try:
            out, err = process.communicate(timeout=60)
            gone = time.monotonic()
        finally:
            stop(process)
        assert process.returncode == EXIT_CODES.get(ending, 0), err
        lines = dict(line.split(" ", 1) for line in out.splitlines())
        latency = gone - float(lines["done"])
        assert latency < EXIT_DEADLINE, f"{ending}: the process took {latency:.2f}s to exit"
        ids = lines["ids"].split()
        assert len(ids) == SESSIONS
        checker = create_session_manager(url)
        try:
            for n, session_id in enumerate(ids):
                info = checker.get_session_info(session_id)
                assert info is not None
                assert info["owner"] is None, f"{ending}: a lease was left behind"
                state = checker.load(session_id)
                assert state["context_variables"] == {"n": n}
                assert state["current_phase"] in ("execution", "async")
        finally:
            checker.close()
        print(f"shutdown {ending}: exited {latency * 1000:.0f} ms after its last line")  # noqa: T201


_BUSY_STEP = """
import sys, threading, time
from actors import create_session_manager

class Runtime:
    def close(self):
        pass

started = threading.Event()

def slow_step(runtime):
    started.set()
    time.sleep(60)  # the host's own code, far longer than call_timeout

manager = create_session_manager(
    sys.argv[1], call_timeout=CALL_TIMEOUT, runtime_factory=lambda state: Runtime()
)
busy = manager.create_session("copilot", {})
idle = manager.create_session("copilot", {})
for sid in (busy, idle):
    assert manager.save_session_state(sid, [{"role": "user", "content": sid}], {}, "work", 1)
threading.Thread(target=manager.run_in_actor, args=(busy, slow_step), daemon=True).start()
assert started.wait(10)
print("ids", busy, idle, flush=True)
print("done", time.monotonic(), flush=True)
"""


class TestBusyActorAtExit:
    """A step still running in an actor does not hold the host's exit."""

    CALL_TIMEOUT = 2.0

    @pytest.mark.slow
    def test_exits_within_call_timeout_while_a_step_runs(self, tmp_path: Path) -> None:
        """Without close(), a 60 s run_in_actor step delays the exit by call_timeout at most.

        The exit hook closes the manager: it waits call_timeout for the busy actor, which
        runs on a daemon thread and so does not hold the interpreter either; both leases
        are released and every acknowledged save is stored.
        """
        url = f"sqlite:///{tmp_path / 'sessions.db'}"
        script = _BUSY_STEP.replace("CALL_TIMEOUT", repr(self.CALL_TIMEOUT))
        process = spawn(
            ["-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
        )
        try:
            out, err = process.communicate(timeout=60)
            gone = time.monotonic()
        finally:
            stop(process)
        assert process.returncode == 0, err
        lines = dict(line.split(" ", 1) for line in out.splitlines())
        latency = gone - float(lines["done"])
        assert latency < self.CALL_TIMEOUT + 3.0, f"the process took {latency:.2f}s to exit"
        checker = create_session_manager(url)
        try:
            for session_id in lines["ids"].split():
                info = checker.get_session_info(session_id)
                assert info is not None
                assert info["owner"] is None, "a lease was left behind"
                assert checker.load(session_id)["current_phase"] == "work"
        finally:
            checker.close()
        print(f"shutdown with a busy step: exited {latency * 1000:.0f} ms after its last line")  # noqa: T201
