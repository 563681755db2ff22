"""One process of the PostgreSQL "processes x threads" row (started by ``benchmarks._pg``).

``python -m benchmarks._pg_procs URL FIRST SESSIONS STEPS THREADS``: opens its own manager
on ``URL``, creates sessions ``FIRST .. FIRST+SESSIONS-1`` of the workload, prints
``ready``, waits for a line on stdin, saves ``STEPS`` steps of each from ``THREADS``
threads, and prints ``{"saved": checkpoints, "wall": seconds}`` as JSON.
"""

from __future__ import annotations

import json
import sys

from actors import create_session_manager
from benchmarks._pg import drive
from benchmarks._workload import Workload


def _ready() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def main(argv: list[str]) -> int:
    """Run one process's share; print its result."""
    url, first, sessions, steps, threads = argv
    manager = create_session_manager(url, max_live=100_000)
    try:
        saved, wall = drive(manager, Workload(), range(int(first), int(first) + int(sessions)),
                            int(steps), int(threads), ready=_ready)  # fmt: skip
    finally:
        manager.close()
    print(json.dumps({"saved": saved, "wall": wall}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
