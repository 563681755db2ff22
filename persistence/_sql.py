"""Statements written once in SQLAlchemy Core, compiled once per dialect, run on the driver.

The hot paths (checkpoint, lease take, create, load) run the compiled text straight on
the driver's connection (``sqlite3``, psycopg 3): SQLAlchemy's execution and result
machinery costs more than such a statement itself. The text is compiled from the Core
statement, so it follows the models, and each dialect compiles it only once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import BindParameter, Dialect, literal_column
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.visitors import replacement_traverse


@dataclass(frozen=True, slots=True)
class CompiledSQL:
    """The text of a statement for one dialect, and the values of its literal parameters."""

    text: str
    defaults: Mapping[str, Any]

    def bind(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """``params`` with the statement's literal parameters (e.g. ``'active'``) added."""
        if not self.defaults:
            return params
        return {**self.defaults, **params}


class Statement:
    """A Core statement and its compiled text per dialect (compiled on first use)."""

    __slots__ = ("_compiled", "_lock", "core", "name")

    def __init__(self, name: str, core: ClauseElement) -> None:
        self.name = name
        self.core = core
        self._compiled: dict[str, CompiledSQL] = {}
        self._lock = threading.Lock()

    def compiled(self, dialect: Dialect) -> CompiledSQL:
        """The text for ``dialect`` (named parameters in the driver's own style)."""
        found = self._compiled.get(dialect.name)
        if found is not None:
            return found
        with self._lock:
            found = self._compiled.get(dialect.name)
            if found is not None:  # another thread compiled it meanwhile
                return found
            compiled = _inline_literals(self.core, dialect).compile(dialect=dialect)
            if "POSTCOMPILE" in str(compiled):
                msg = f"{self!r}: an expanding IN cannot be compiled once; bind each value"
                raise ValueError(msg)
            # What could not be inlined (e.g. SQLite's OFFSET after a bound LIMIT): the
            # caller binds the rest, by name.
            literals = {
                name: value
                for name, value in compiled.params.items()
                if not cast("Any", compiled).binds[name].required
            }
            found = CompiledSQL(str(compiled), literals)
            self._compiled[dialect.name] = found
        return found

    def __repr__(self) -> str:
        return f"Statement({self.name!r})"


def _inline_literals(core: ClauseElement, dialect: Dialect) -> ClauseElement:
    """``core`` with its literal values (``'active'``, ``1``, a NULL) written into the SQL.

    Only the caller's own parameters stay bound, so a call passes exactly its values and
    nothing is merged in per execution.
    """

    def inline(element: Any, **_kw: Any) -> Any:
        if isinstance(element, BindParameter) and not element.required:
            rendered = element.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
            return literal_column(str(rendered), element.type)
        return None

    return cast("ClauseElement", replacement_traverse(cast("Any", core), {}, inline))
