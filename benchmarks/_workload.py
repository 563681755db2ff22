"""The workload of ``../shared/peer-bench`` (same seed, same data), so results compare.

One step of a simulated agent conversation is one checkpoint: 2 new ~500-byte messages
(user, assistant), a 20-key ``context_variables`` dict (a few keys change every step) and a
``current_phase`` string that changes every 25 steps. The data is deterministic and is
generated outside every timed region.
"""

from __future__ import annotations

import random
from typing import Any

_WORDS = (  # noqa: SIM905 - the same text as peer-bench
    "the agent user order refund shipping invoice account policy update please check "
    "status customer ticket request response tool result search summary plan draft "
    "review approve reject escalate context memory session phase retry timeout error "
    "success payment address delivery product warranty return label tracking number "
    "priority schedule meeting calendar email reply forward attach document report "
    "analysis metric latency budget token model prompt answer question clarify confirm"
).split()

PHASES = ["intake", "research", "planning", "execution", "review", "wrap_up"]
TOOLS = ["search_kb", "lookup_order", "issue_refund", "send_email", "create_ticket"]
SEED = 20240601


class Workload:
    """Deterministic step data: ``messages``, ``context`` and ``phase`` of step ``k``."""

    def __init__(self, msg_bytes: int = 500, ctx_keys: int = 20, seed: int = SEED) -> None:
        rng = random.Random(seed)
        self.ctx_keys = ctx_keys
        self.pool: list[str] = []
        for _ in range(509):  # a prime-sized pool of ~msg_bytes texts
            words: list[str] = []
            size = 0
            while size < msg_bytes - 24:
                word = rng.choice(_WORDS)
                words.append(word)
                size += len(word) + 1
            self.pool.append(" ".join(words))

    def messages(self, session: int, step: int) -> list[dict[str, Any]]:
        """The 2 new messages of a step."""
        i = (session * 7919 + step * 2) % len(self.pool)
        tag = f"[s{session} k{step}]"
        return [
            {"role": "user", "content": f"{tag} U: {self.pool[i]}"},
            {"role": "assistant", "content": f"{tag} A: {self.pool[(i + 1) % len(self.pool)]}"},
        ]

    def context(self, session: int, step: int) -> dict[str, Any]:
        """The context variables after a step."""
        ctx: dict[str, Any] = {
            "session_no": session,
            "user_id": f"user-{session:06d}",
            "locale": "en-US",
            "timezone": "Europe/Berlin",
            "step": step,
            "turn_count": 2 * step,
            "total_tokens": 731 * step,
            "last_tool": TOOLS[step % len(TOOLS)],
            "last_tool_ok": step % 7 != 0,
            "retries": step % 3,
            "temperature": 0.2,
            "model": "model-x-2024",
            "budget_remaining": round(100.0 - 0.013 * step, 3),
            "open_tasks": [f"task-{(step + j) % 17}" for j in range(3)],
            "flags": {"verbose": False, "safe_mode": True, "beta": step % 2 == 0},
            "customer_tier": "gold",
            "ticket_id": f"T-{session}-{step // 50}",
            "language": "en",
            "summary_version": step // 100,
            "last_error": None if step % 11 else "tool timeout",
        }
        keys = list(ctx)
        for j in range(len(keys), self.ctx_keys):
            ctx[f"extra_{j}"] = f"value-{j}-{step % 5}"
        for key in keys[self.ctx_keys :]:
            del ctx[key]
        return ctx

    @staticmethod
    def phase(step: int) -> str:
        """The phase during a step (changes every 25 steps)."""
        return PHASES[(step // 25) % len(PHASES)]
