"""One clock per database: PostgreSQL judges lease lapse and expiry by its own clock.

Processes sharing a database each have a clock, and clocks drift. A process whose clock
runs ahead would otherwise take over sessions whose owners are alive and renewing, and
expire other processes' sessions early. On PostgreSQL those judgements compare with the
server's ``clock_timestamp()`` instead, shifted by the caller's *offset*: how far the
caller's (possibly injected) clock is from this machine's real time, computed per call.
With the real clock the offset is about zero and the server's clock decides; a test's
``ManualClock`` keeps its own time (instant), give or take the call's round trip.
SQLite is one machine: its judgements use the caller's time as given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import DateTime, Interval


def system_now() -> datetime:
    """This machine's real time (the reference the offset is taken from)."""
    return datetime.now(UTC)


def offset(now: datetime) -> timedelta:
    """How far ``now`` (the caller's clock) is from this machine's real time."""
    return now - system_now()


class JudgedNow(ColumnElement[datetime]):
    """The time a hot statement judges lapse by: ``:now``, or on PostgreSQL the server's.

    Bound as ``now`` (the caller's time) and ``offset`` (:func:`offset` of it): pass both.
    """

    inherit_cache = True
    type = DateTime(timezone=True)


@compiles(JudgedNow)
def _caller_time(_element: JudgedNow, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(bindparam("now"), **kw))


@compiles(JudgedNow, "postgresql")
def _server_time(_element: JudgedNow, compiler: Any, **kw: Any) -> str:
    shift = compiler.process(bindparam("offset", type_=Interval()), **kw)
    return f"(clock_timestamp() + CAST({shift} AS interval))"


def judged_now(dialect: str, now: datetime) -> Any:
    """``now`` as a Core expression for a statement run on ``dialect`` (see the module)."""
    if dialect != "postgresql":
        return now  # compared with a UTCDateTime column, it is bound as one
    return func.clock_timestamp() + literal(offset(now), Interval())
