"""Where a SQLite database lives: a file checked before it is opened, or process memory.

A path that cannot hold the database (a missing directory, a directory, no write access)
is refused with one line naming the absolute path and what to do, not with the driver's
"unable to open database file" under a chained traceback.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

from persistence._errors import StoreUnavailable

#: The database names that mean "in memory" (``:memory:``, ``sqlite://``,
#: ``sqlite:///:memory:``).
MEMORY_NAMES = (None, "", ":memory:")
#: How an in-memory database is shown in messages and ``Database.url``.
MEMORY_URL = "sqlite:///:memory:"


def is_memory(database: str | None) -> bool:
    """Whether a URL's database part names an in-memory database."""
    return database in MEMORY_NAMES


def memory_uri() -> str:
    """A new, process-wide in-memory database that every connection of one store shares.

    SQLite's ``memdb`` VFS: a name starting with ``/`` is shared by the connections of the
    process that open it, with the usual file locking between them (a read sees only
    committed writes), unlike a shared-cache ``:memory:`` whose table locks fail readers at
    once. It lives while one connection to it is open: the backend keeps one.
    """
    return f"file:/session-supervisor-{uuid.uuid4().hex}?vfs=memdb"


def _refuse(path: Path, why: str) -> StoreUnavailable:
    return StoreUnavailable(f"cannot open the session store at {path}: {why}")


def check_file(database: str) -> None:
    """Refuse a path that cannot hold a SQLite database, before anything is opened.

    Raises:
        StoreUnavailable: one line: the absolute path, what is wrong and what to do.
    """
    path = Path(os.path.abspath(Path(database).expanduser()))  # noqa: PTH100 - no symlinks resolved
    parent = path.parent
    if path.is_dir():
        raise _refuse(
            path, f"it is a directory; give a file path, e.g. {path / 'sessions.db'}"
        ) from None
    if not parent.exists():
        raise _refuse(
            path, f"the directory {parent} does not exist; create it (mkdir -p {parent}) first"
        ) from None
    if not parent.is_dir():
        raise _refuse(path, f"{parent} is not a directory; give another path") from None
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise _refuse(path, "this process may not read and write it; fix its permissions")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise _refuse(path, f"this process may not create files in {parent}; give another path")
    # What the checks cannot see (a read-only file system, root on /proc): ask SQLite.
    try:
        probe = sqlite3.connect(path)
        try:
            probe.execute("PRAGMA schema_version").fetchone()
        finally:
            probe.close()
    except sqlite3.Error as exc:
        raise _refuse(
            path, f"SQLite says {exc!s}; give a writable SQLite file, or a new file's path"
        ) from None
