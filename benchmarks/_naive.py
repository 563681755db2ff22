"""The seed's way, as the baseline: SQLAlchemy ORM, the whole history rewritten per save.

This is what the seed's ``SessionManager.save_session_state`` does: open an ORM session,
``SELECT`` the active ``session_states`` row, overwrite its ``conversation_history`` JSON
column with the whole list the caller passed, set context and phase, ``version += 1``,
commit. Engine defaults, as the seed leaves them (rollback journal, ``synchronous=FULL``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class _Base(DeclarativeBase):
    pass


class _SessionState(_Base):
    __tablename__ = "session_states"

    session_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    mode: Mapped[str] = mapped_column(String(64))
    conversation_history: Mapped[list[Any]] = mapped_column(JSON)
    context_variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan_data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    current_phase: Mapped[str] = mapped_column(String(255))
    current_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NaiveStore:
    """The seed's save and load on one SQLite file."""

    def __init__(self, path: str) -> None:
        self.engine = create_engine(f"sqlite:///{path}")
        _Base.metadata.create_all(self.engine)

    def create_session(self, mode: str = "copilot") -> str:
        """Insert an empty active session; return its id."""
        session_id = str(uuid.uuid4())
        with Session(self.engine) as db:
            db.add(
                _SessionState(
                    session_id=session_id, mode=mode, conversation_history=[],
                    context_variables={}, plan_data=None, current_phase="init",
                    current_step=None, status="active", version=1,
                    updated_at=datetime.now(UTC),
                )
            )  # fmt: skip
            db.commit()
        return session_id

    def save_session_state(  # noqa: PLR0917 - the seed's signature
        self,
        session_id: str,
        conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any],
        current_phase: str,
        current_step: int | None = None,
        plan_data: dict[str, Any] | None = None,
    ) -> bool:
        """The seed's save: rewrite the whole state row, history included."""
        with Session(self.engine) as db:
            state = db.execute(
                select(_SessionState).where(
                    _SessionState.session_id == session_id, _SessionState.status == "active"
                )
            ).scalar_one_or_none()
            if state is None:
                return False
            state.conversation_history = conversation_history
            state.context_variables = context_variables
            state.current_phase = current_phase
            state.current_step = current_step
            if plan_data is not None:
                state.plan_data = plan_data
            state.version = state.version + 1
            state.updated_at = datetime.now(UTC)
            db.commit()
            return True

    def load_session_state(self, session_id: str) -> dict[str, Any] | None:
        """The seed's load: the row as a dict."""
        with Session(self.engine) as db:
            state = db.get(_SessionState, session_id)
            if state is None:
                return None
            return {
                "session_id": session_id,
                "conversation_history": state.conversation_history,
                "context_variables": state.context_variables,
                "current_phase": state.current_phase,
                "current_step": state.current_step,
            }

    def close(self) -> None:
        """Dispose the engine."""
        self.engine.dispose()
