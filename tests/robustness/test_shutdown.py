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
