"""What a save must write: an append, a window that slid, or a rewritten history.

A session's actor never holds the history itself, only what it needs to compare a new
history with the stored one without reading it: the stored rows at sampled positions
(the first, every power of two, the last), or with ``history_check="full"`` a 64-bit hash
of every stored row. Both compare *encoded* rows, what the database holds: ``1`` and
``True``, ``1`` and ``1.0``, ``0.0`` and ``-0.0`` are equal in Python but stored as
different text, so replacing one by the other is a change.

Three shapes are recognised, cheapest first:

* **append**: the stored history is a prefix of the new one; only the new rows are
  written.
* **slide**: the new history starts with the stored one's tail (``buffer[-100:]`` after
  new messages): the rows that fell out of the window are deleted and the new ones
  appended, so storage stays bounded and a save costs about what an append costs.
* **rewrite**: anything else (truncated, summarised, edited); the stored rows are
  replaced from position 0, or with ``"full"`` from the first one that differs.

With sampled detection an in-place edit of a message at a position that is not sampled
goes unseen (the save is taken for an append or a slide); ``"full"`` sees every edit at
the cost of encoding and hashing the whole history on every save.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from persistence import MessageRow, SessionSupervisorError, encode_message, sample_positions

HistoryCheck = Literal["sampled", "full"]
HISTORY_CHECKS: tuple[str, ...] = ("sampled", "full")

#: Slide offsets tried with ``"full"`` before settling for a rewrite: each try compares
#: the whole overlap, and only a history of many equal messages offers more than one.
_FULL_SLIDE_TRIES = 16


@dataclass(frozen=True, slots=True)
class Delta:
    """What one save writes, in the new history's positions.

    Positions ``0 .. first - 1`` stay as stored (they were stored at old positions
    ``dropped ..``); ``rows`` are the new history from ``first`` on. ``rewrite``: the stored
    rows from ``first`` on are deleted first; ``dropped``: that many of the oldest stored
    rows are deleted (a slide).
    """

    kind: str
    first: int
    rows: list[MessageRow]
    dropped: int = 0
    rewrite: bool = False
    #: With ``"full"``: the hash of every row of the new history.
    hashes: array[int] | None = None


class _Encoded:
    """The caller's history, each message encoded at most once per save."""

    __slots__ = ("_cache", "_limit", "history")

    def __init__(
        self,
        history: list[Any],
        limit: int | None,
        encoded: tuple[int, list[MessageRow]] | None = None,
    ) -> None:
        self.history = history
        self._limit = limit
        self._cache: dict[int, MessageRow | None] = {}
        if encoded is not None:  # encoded at the call (a queued save's snapshot)
            first, rows = encoded
            self._cache.update(enumerate(rows, start=first))

    def row(self, position: int) -> MessageRow | None:
        """The message's row, or ``None`` if it cannot be stored (then it equals nothing)."""
        cache = self._cache
        if position in cache:
            return cache[position]
        try:
            row: MessageRow | None = self._encode(position)
        except SessionSupervisorError:  # refused when it is written, with its path
            row = None
        cache[position] = row
        return row

    def rows_from(self, first: int) -> list[MessageRow]:
        """The rows of positions ``first ..``; raises on a message that cannot be stored."""
        cache = self._cache
        rows: list[MessageRow] = []
        for position in range(first, len(self.history)):
            row = cache.get(position)
            rows.append(self._encode(position) if row is None else row)
        return rows

    def _encode(self, position: int) -> MessageRow:
        return encode_message(
            self.history[position], f"conversation_history[{position}]", self._limit
        )


class StoredHistory:
    """The owner's view of a stored history: its length, first ``seq`` and what it compares.

    Args:
        count: how many messages are stored.
        base: the ``seq`` of the first one.
        samples: the stored rows at (some of) ``sample_positions(count)``.
        full: keep a hash of every row (``history_check="full"``); they are read from
            the database by ``read_rows`` on first need.
    """

    def __init__(
        self,
        count: int,
        base: int,
        samples: dict[int, MessageRow],
        *,
        full: bool = False,
        read_rows: Callable[[], list[MessageRow]] | None = None,
    ) -> None:
        self.count = count
        self.base = base
        self.samples = samples
        self._full = full
        self._read_rows = read_rows
        self._digests: array[int] | None = None

    # ------------------------------------------------------------------ planning

    def plan(
        self,
        history: list[Any],
        rewritten: bool | None,
        limit: int | None,
        pre_encoded: tuple[int, list[MessageRow]] | None = None,
    ) -> Delta:
        """What saving ``history`` writes; ``rewritten`` as the caller said (``None``: detect).

        ``pre_encoded``: the rows of ``history[first:]`` as ``(first, rows)``, if they were
        encoded at the call (they are used rather than the messages, which the caller may
        have changed since).

        Raises:
            NotSerializable, PayloadTooLarge: a message to be written cannot be stored.
        """
        encoded = _Encoded(history, limit, pre_encoded)
        stored, new = self.count, len(history)
        if rewritten is not None:  # the caller knows; a shorter history is never an append
            if not rewritten and new >= stored:
                return Delta("append", stored, encoded.rows_from(stored))
            return Delta("rewrite", 0, encoded.rows_from(0), rewrite=True)
        if self._full:
            return self._plan_full(encoded)
        if new >= stored and all(
            encoded.row(position) == row for position, row in self.samples.items()
        ):
            return Delta("append", stored, encoded.rows_from(stored))
        slid = self._sampled_slide(encoded)
        if slid is not None:
            return Delta("slide", stored - slid, encoded.rows_from(stored - slid), dropped=slid)
        return Delta("rewrite", 0, encoded.rows_from(0), rewrite=True)

    def _candidates(self, encoded: _Encoded, last: Any, key: Callable[[int], Any]) -> Iterator[int]:
        """Slide offsets ``k >= 1`` at which the stored last message reappears, smallest first.

        After a slide by ``k`` the stored last message is at position ``count - 1 - k``;
        searched from the end, so a window that slid by a few messages is found at once.
        """
        for position in range(min(len(encoded.history) - 1, self.count - 2), -1, -1):
            if key(position) == last:
                yield self.count - 1 - position

    def _sampled_slide(self, encoded: _Encoded) -> int | None:
        last = self.samples.get(self.count - 1)
        if self.count < 2 or last is None:
            return None
        for offset in self._candidates(encoded, last, encoded.row):
            if all(
                encoded.row(position - offset) == row
                for position, row in self.samples.items()
                if position >= offset
            ):
                return offset
        return None

    def _plan_full(self, encoded: _Encoded) -> Delta:
        stored, new = self.count, len(encoded.history)
        hashes = array("q", (_digest(encoded.row(position)) for position in range(new)))
        digests = self._stored_digests()
        if digests is None:  # the stored rows are not what the state row says
            return Delta("rewrite", 0, encoded.rows_from(0), rewrite=True, hashes=hashes)
        same = min(stored, new)
        first = next((i for i in range(same) if hashes[i] != digests[i]), same)
        if first == stored:
            return Delta("append", stored, encoded.rows_from(stored), hashes=hashes)
        rewrite_cost = (stored - first) + (new - first)
        if stored >= 2:
            last = digests[stored - 1]
            tries = self._candidates(encoded, last, hashes.__getitem__)
            for offset in itertools.islice(tries, _FULL_SLIDE_TRIES):
                kept = stored - offset
                if offset + (new - kept) <= rewrite_cost and hashes[:kept] == digests[offset:]:
                    rows = encoded.rows_from(kept)
                    return Delta("slide", kept, rows, dropped=offset, hashes=hashes)
        return Delta("rewrite", first, encoded.rows_from(first), rewrite=True, hashes=hashes)

    def _stored_digests(self) -> array[int] | None:
        """The hash of every stored row, read once after a rehydration."""
        digests = self._digests
        if digests is None and self._read_rows is not None:
            digests = array("q", (_digest(row) for row in self._read_rows()))
            self._digests = digests
        if digests is None or len(digests) != self.count:
            self._digests = None
            return None
        return digests

    # ------------------------------------------------------------------ after a commit

    def applied(self, delta: Delta, history: list[Any]) -> None:
        """Take the state after ``delta`` (for ``history``) committed."""
        dropped, first, rows = delta.dropped, delta.first, delta.rows
        count = first + len(rows)
        kept = self.samples
        samples: dict[int, MessageRow] = {}
        encoded: _Encoded | None = None
        for position in sample_positions(count):
            if position >= first:
                samples[position] = rows[position - first]
                continue
            row = kept.get(position + dropped)
            if row is None:  # a slide moved the sampled positions: from the caller's list
                encoded = encoded or _Encoded(history, None)
                row = encoded.row(position)
            if row is not None:
                samples[position] = row
        self.samples = samples
        self.base += dropped
        self.count = count
        if self._full:
            # Planning hashed the whole new history (unless the caller said what it is).
            digests = delta.hashes
            if digests is None and self._digests is not None:
                digests = self._digests[dropped : dropped + first]
                digests.extend(_digest(row) for row in rows)
            self._digests = digests

    def appended(self, rows: list[MessageRow]) -> None:
        """Take the state after ``rows`` were appended (``append_messages``)."""
        first = self.count
        count = first + len(rows)
        samples = {p: r for p, r in self.samples.items() if p in _positions(count)}
        for position in sample_positions(count):
            if position >= first:
                samples[position] = rows[position - first]
        self.samples = samples
        self.count = count
        if self._digests is not None:
            self._digests.extend(_digest(row) for row in rows)


def _digest(row: MessageRow | None) -> int:
    # hash() never returns -1: a message that cannot be stored equals no stored row.
    return -1 if row is None else hash(row)


def _positions(count: int) -> frozenset[int]:
    return frozenset(sample_positions(count))
