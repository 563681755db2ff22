"""``sessions``: see and steer the sessions of a session store without writing Python.

The console script ``sessions`` (and ``python -m actors.cli``) runs :func:`main`.
:mod:`actors.cli._main` holds the group and the reading commands, :mod:`actors.cli._ops`
the changing ones, :mod:`actors.cli._support` the exit codes, the database and the
formatting they share.
"""

from __future__ import annotations

from actors.cli._main import cli, main

__all__ = ["cli", "main"]
