"""The README's API tour runs as written (its first Python block, top-level awaits included)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def tour() -> str:
    """The first ``python`` code block after the ``## API tour`` heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## API tour\n") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "no python block in the API tour"
    return found.group(1)


class TestReadmeTour:
    """The tour is code a newcomer can paste: it must run and do what its comments say."""

    def test_the_tour_runs_as_written(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Compiled with top-level await, run in a fresh directory; its manager ends closed."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("SESSIONS_DATABASE_URL", raising=False)
        code = compile(tour(), str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        namespace: dict[str, Any] = {"__name__": "__readme__"}
        try:
            result = eval(code, namespace)  # noqa: S307 - our own README's code
            if inspect.iscoroutine(result):
                asyncio.run(result)
        finally:
            if "manager" in namespace:
                namespace["manager"].close()  # a failed tour leaves nothing running
        assert namespace["answer"]["resolution"] == "approved"
        assert namespace["ok"] is True
        assert namespace["version"] >= 2
        assert (tmp_path / "sessions.db").is_file()
