"""What the ``sessions`` command says about a database that is not what it expects.

A damaged or foreign file, a schema that is missing, behind or newer than this version,
and errors worded for operators: one line, no SQL text, no library links.
"""

from __future__ import annotations

import re
import sqlite3
from enum import StrEnum

from persistence import Database, InvalidArgument, SessionNotFound, StoreUnavailable
from persistence._inspect import ids_with_prefix_fn
from persistence._migrate import known_revisions

#: The shortest id prefix accepted (as git and docker do, shorter ones match too much).
MIN_PREFIX = 4
#: How many candidates an ambiguous prefix lists.
CANDIDATES = 10

_NOISE = re.compile(r"\s*(\[SQL:.*|\[parameters:.*|\(Background on this error at:.*)$", re.S)


def damaged_reason(error: BaseException) -> str | None:
    """SQLite's own words when ``error`` comes from a file that is not a sound database.

    ``sqlite3.DatabaseError`` itself (not a subclass such as ``OperationalError``, a lock
    or a missing directory) is what SQLite raises for a foreign or corrupted file: "file is
    not a database", "database disk image is malformed".
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current) is sqlite3.DatabaseError:
            return str(current).splitlines()[0] if str(current) else "unreadable"
        orig = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's
        if type(orig) is sqlite3.DatabaseError:
            return str(orig).splitlines()[0]
        current = current.__cause__ or current.__context__
    return None


def one_line(message: str) -> str:
    """A library or driver message without its SQL text, parameters and links: one line."""
    first = _NOISE.sub("", message.strip()).splitlines()
    return " ".join(first[0].split()) if first else message


class Schema(StrEnum):
    """Where a database's schema stands against this version's migrations."""

    CURRENT = "current"
    EMPTY = "empty"
    BEHIND = "behind"
    NEWER = "newer"


def runs_against_newer(db: Database) -> bool:
    """Whether this version may run against the database's newer schema.

    A newer release keeps the previous one working (migrations only add) and says how far
    back in ``compatible_from``; the library runs within that window, so the CLI does too.
    """
    try:
        db.store.check_schema(upgrade_allowed=False)
    except StoreUnavailable:  # SchemaTooNew (or SchemaOutdated: not newer after all)
        return False
    return True


def schema_state(current: str | None, head: str | None) -> Schema:
    """Whether ``current`` is this version's head, missing, older, or unknown (newer)."""
    if current is None:
        return Schema.EMPTY
    if current == head:
        return Schema.CURRENT
    return Schema.BEHIND if current in known_revisions() else Schema.NEWER


def schema_message(current: str | None, head: str | None) -> str:
    """What to tell an operator whose database is not at ``head``."""
    match schema_state(current, head):
        case Schema.EMPTY:
            return (
                f"the database is empty (no session schema); `sessions db upgrade` creates"
                f" it at revision {head}"
            )
        case Schema.NEWER:
            return (
                f"the database is at schema revision {current}, newer than this version of"
                f" session-supervisor knows (its newest is {head}): use the newer version"
                " that upgraded it"
            )
        case Schema.BEHIND:
            return (
                f"the database is at schema revision {current}, this version needs {head}:"
                " run `sessions db upgrade`"
            )
        case _:
            return f"the database is at revision {head}, up to date"


def resolve_id(db: Database, given: str) -> str:
    """The session ``given`` names: its exact id, or the one id it is a prefix of.

    Raises:
        SessionNotFound: no such session (or a prefix shorter than :data:`MIN_PREFIX`).
        InvalidArgument: the prefix starts several ids (they are listed).
    """
    if db.store.session_info(given) is not None:
        return given
    if len(given) < MIN_PREFIX:
        raise SessionNotFound(given)
    found = db.store.read(ids_with_prefix_fn(given, CANDIDATES + 1))
    if not found:
        raise SessionNotFound(given)
    if len(found) == 1:
        return found[0]
    listed = ", ".join(found[:CANDIDATES]) + (", ..." if len(found) > CANDIDATES else "")
    raise InvalidArgument(
        f"{given!r} is the start of more than one session id ({listed}); give more of it"
    )
