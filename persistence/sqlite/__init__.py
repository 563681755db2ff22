"""The SQLite backend: the embedded default (a WAL file, one writer, read-only readers)."""

from persistence.sqlite._backend import SqliteBackend, SqliteSynchronous, sqlite_datetime
from persistence.sqlite._walcheckpoint import CHECKPOINT_EVERY, FALLBACK_PAGES, WalCheckpointer

__all__ = [
    "CHECKPOINT_EVERY",
    "FALLBACK_PAGES",
    "SqliteBackend",
    "SqliteSynchronous",
    "WalCheckpointer",
    "sqlite_datetime",
]
