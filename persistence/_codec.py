"""Encoding of conversation messages into rows, and back.

A message is any JSON object. Its ``role``, ``agent``, ``content`` and ``timestamp`` keys
go to their own columns when they are strings (so the content is stored once, unquoted);
every other key goes to ``extra`` as JSON. Decoding gives back an equal dict.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from persistence import _json
from persistence._errors import NotSerializable, SessionSupervisorError
from persistence._records import MessageRow

_COLUMNS = ("role", "agent", "content", "timestamp")
#: The widths of those columns (``None``: unbounded). A longer value goes to ``extra``,
#: so PostgreSQL never refuses a message SQLite would have stored.
_WIDTHS = (64, 255, None, 64)


#: Column slot by key; a dict lookup, since every key of every message passes here.
_SLOTS = {key: slot for slot, key in enumerate(_COLUMNS)}


def encode_message(message: Any, path: str, limit: int | None) -> MessageRow:
    """Validate one message and split it into its row.

    Raises:
        NotSerializable: the message is not a JSON object of plain JSON values.
        PayloadTooLarge: the message is bigger than ``limit`` bytes.
    """
    if not isinstance(message, dict):
        raise NotSerializable(path, f"a message must be a dict, not {type(message).__name__}")
    try:
        return _encode_dict(message, path, limit)
    except SessionSupervisorError:  # NotSerializable, PayloadTooLarge
        raise
    except Exception as exc:  # its own methods raised (a hostile dict or str subclass)
        raise _json.unreadable(path, exc) from exc


def _encode_dict(message: dict[Any, Any], path: str, limit: int | None) -> MessageRow:
    columns: list[str | None] = [None, None, None, None]
    extra: dict[str, Any] | None = None
    size = 0
    for key, value in message.items():
        slot = _SLOTS.get(key) if isinstance(key, str) else None
        if slot is not None and isinstance(value, str) and "\x00" not in value:
            width = _WIDTHS[slot]
            if width is None or len(value) <= width:
                # ASCII text is valid and one byte a character; otherwise encoding it both
                # sizes it and refuses lone surrogates.
                if value.isascii():
                    size += len(value)
                else:
                    try:
                        size += len(value.encode("utf-8"))
                    except UnicodeEncodeError:
                        _json.check(value, f"{path}.{key}")  # raises, naming the fault
                        raise
                columns[slot] = value
                continue
        if extra is None:
            extra = {}
        extra[key] = value
    extra_json = None
    if extra is not None:
        extra_json = _json.encode(extra, path, None)
        size += len(extra_json) if extra_json.isascii() else len(extra_json.encode("utf-8"))
    if limit is not None and size > limit:
        _json.encode(message, path, limit)  # raises PayloadTooLarge with the exact size
    return (columns[0], columns[1], columns[2], columns[3], extra_json)


def decode_message(row: MessageRow) -> dict[str, Any]:
    """Rebuild the message dict of a stored row."""
    message: dict[str, Any] = {}
    for key, value in zip(_COLUMNS, row[:4], strict=True):
        if value is not None:
            message[key] = value
    extra = row[4]
    if extra is not None:
        message.update(_json.decode(extra))
    return message


def decode_rows(rows: Iterable[MessageRow]) -> list[dict[str, Any]]:
    """Rebuild the messages of stored rows, in order: :func:`decode_message`, unrolled.

    A load decodes thousands of rows, so this is the loop without per-row calls beyond the
    JSON decoder (only for rows with extra keys); it must stay equal to ``decode_message``.
    """
    decode = _json.decode
    history: list[dict[str, Any]] = []
    append = history.append
    for role, agent, content, timestamp, extra in rows:
        message: dict[str, Any] = {}
        if role is not None:
            message["role"] = role
        if agent is not None:
            message["agent"] = agent
        if content is not None:
            message["content"] = content
        if timestamp is not None:
            message["timestamp"] = timestamp
        if extra is not None:
            message.update(decode(extra))
        append(message)
    return history
