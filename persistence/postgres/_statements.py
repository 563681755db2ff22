"""PostgreSQL's own form of the hot write: a whole checkpoint in one statement.

An appending checkpoint is three statements elsewhere (the fenced state update, the new
messages, the session's ``last_active_at``); here one statement with data-modifying
CTEs does all three, and its other parts only act on the row the fenced update matched,
so a refused checkpoint still writes nothing. A sliding window's checkpoint (the oldest
messages dropped, new ones appended) is the same statement with one more part. One
statement is one round trip: alone in its batch it runs in autocommit (it is its own
transaction); in a batch, every operation's statement goes out in one pipeline between
BEGIN and COMMIT.
"""

from __future__ import annotations

from sqlalchemy import text

from persistence._sql import Statement
from persistence._tables import messages, sessions, states


def _checkpoint(name: str, *, slide: bool) -> Statement:
    # A sliding window's oldest messages go in the same statement: the delete, like the
    # insert, acts only on the row the fenced update matched (their seqs never overlap).
    drop = (
        f"""
), dropped AS (
  DELETE FROM {messages.name} USING upd
  WHERE {messages.name}.session_id = upd.session_id
    AND {messages.name}.seq < CAST(:drop_before AS integer)"""  # noqa: S608 - names only
        if slide
        else ""
    )
    return Statement(
        name,
        text(
            f"""WITH upd AS (
  UPDATE {states.name} SET context_variables = :context, current_phase = :phase,
    current_step = :step, updated_at = :now, expires_at = :expires,
    version = :new_version, message_count = :count,
    plan_data = CASE WHEN CAST(:set_plan AS boolean) THEN :plan ELSE plan_data END
  WHERE session_id = :sid AND version = :expected AND epoch = :mine AND status = 'active'
  RETURNING session_id
), ins AS (
  INSERT INTO {messages.name} (session_id, seq, role, agent, content, timestamp, extra)
  SELECT upd.session_id, m.seq, m.role, m.agent, m.content, m.ts, m.extra
  FROM upd, unnest(CAST(:seqs AS integer[]), CAST(:roles AS varchar[]),
    CAST(:agents AS varchar[]), CAST(:contents AS text[]), CAST(:stamps AS varchar[]),
    CAST(:extras AS text[])) AS m(seq, role, agent, content, ts, extra){drop}
), touch AS (
  UPDATE {sessions.name} SET last_active_at = :now
  FROM upd WHERE {sessions.name}.id = upd.session_id
)
SELECT count(*) FROM upd"""  # noqa: S608 - names from the models, values bound
        ),
    )


#: Returns one row, ``count(*)`` of the state rows updated: 1 applied, 0 refused.
CHECKPOINT_APPEND = _checkpoint("checkpoint_append", slide=False)
#: The same for a sliding window: also deletes the messages at ``seq < :drop_before``.
CHECKPOINT_SLIDE = _checkpoint("checkpoint_slide", slide=True)
