"""The slots of an ``Engine``: one sequence id each, with the tokens it still holds.

A new request goes to the idle slot whose cached tokens share the longest prefix with its
prompt, when that prefix is at least ``slot_prompt_similarity`` of the prompt (llama-server's
rule); otherwise to the idle slot used least recently, so a conversation's cache lives as
long as possible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._prompt_cache import common_prefix

if TYPE_CHECKING:
    from .request import Request

__all__ = ["EngineSlot", "choose_slot", "common_prefix"]


@dataclass(eq=False)
class EngineSlot:
    seq_id: int
    cached: list[int] = field(default_factory=list)
    last_used: int = 0
    request: Request[object] | None = None


def choose_slot(idle: Sequence[EngineSlot], prompt: Sequence[int], similarity: float,
                cache_prompt: bool) -> EngineSlot:
    """The slot a prompt goes to (``idle`` is not empty)."""
    if cache_prompt and prompt:
        best = max(idle, key=lambda s: (common_prefix(s.cached, prompt), -s.last_used))
        shared = common_prefix(best.cached, prompt)
        if shared and shared / len(prompt) >= similarity:
            return best
    return min(idle, key=lambda s: s.last_used)
