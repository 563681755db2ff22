"""Triggers that record every message row the store inserts or deletes, on both backends.

Tests read the record to see exactly what a save wrote, whichever code path wrote it (the
one-statement PostgreSQL checkpoint, a pipelined batch, SQLite's statements).
"""

from __future__ import annotations

import sqlite3

import psycopg

_SQLITE = """
CREATE TABLE IF NOT EXISTS audit (op TEXT, seq INTEGER);
CREATE TRIGGER IF NOT EXISTS audit_insert AFTER INSERT ON session_messages
    BEGIN INSERT INTO audit VALUES ('insert', NEW.seq); END;
CREATE TRIGGER IF NOT EXISTS audit_delete AFTER DELETE ON session_messages
    BEGIN INSERT INTO audit VALUES ('delete', OLD.seq); END;
"""

_POSTGRES = """
CREATE TABLE IF NOT EXISTS audit (op text, seq integer);
CREATE OR REPLACE FUNCTION audit_message() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO audit (op, seq) VALUES ('insert', NEW.seq);
  ELSE
    INSERT INTO audit (op, seq) VALUES ('delete', OLD.seq);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER audit_message AFTER INSERT OR DELETE ON session_messages
  FOR EACH ROW EXECUTE FUNCTION audit_message();
"""

Writes = list[tuple[str, int]]


class Audit:
    """The message row writes on the database at ``url`` (its schema must exist)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith("postgresql")
        if self.postgres:
            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute(_POSTGRES)
        else:
            with sqlite3.connect(self._path) as connection:
                connection.executescript(_SQLITE)

    @property
    def _path(self) -> str:
        return self.url.split(":///", 1)[1]

    def drain(self) -> Writes:
        """The writes since the last drain, sorted: ``("delete" | "insert", seq)``.

        Sorted, because the order in which one statement deletes its rows is the
        database's choice.
        """
        if self.postgres:
            with psycopg.connect(self.url, autocommit=True) as connection:
                rows = connection.execute("DELETE FROM audit RETURNING op, seq").fetchall()
        else:
            with sqlite3.connect(self._path) as connection:
                rows = connection.execute("SELECT op, seq FROM audit").fetchall()
                connection.execute("DELETE FROM audit")
        return sorted((op, seq) for op, seq in rows)

    def stored_seqs(self, session_id: str) -> list[int]:
        """The ``seq`` of every stored message of a session, in order."""
        query = "SELECT seq FROM session_messages WHERE session_id = {} ORDER BY seq"
        if self.postgres:
            with psycopg.connect(self.url, autocommit=True) as connection:
                rows = connection.execute(query.format("%s"), (session_id,)).fetchall()
        else:
            with sqlite3.connect(self._path) as connection:
                rows = connection.execute(query.format("?"), (session_id,)).fetchall()
        return [row[0] for row in rows]


def inserted(first: int, end: int) -> Writes:
    """Inserts of ``seq`` ``first .. end - 1``."""
    return [("insert", seq) for seq in range(first, end)]


def deleted(first: int, end: int) -> Writes:
    """Deletes of ``seq`` ``first .. end - 1``."""
    return [("delete", seq) for seq in range(first, end)]
