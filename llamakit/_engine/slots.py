"""The slots of an ``Engine``: one sequence id each, with the tokens it still holds.

A new request goes to the idle slot whose cached tokens share the longest prefix with its
prompt, when that prefix is at least ``slot_prompt_similarity`` of the prompt (llama-server's
rule); otherwise to an idle slot that keeps the busy sequence ids together, and among
those the one used least recently, so a conversation's cache lives as long as possible.

Why together: with a KV stream per sequence, llama.cpp splits a batch into ubatches of
*consecutive* sequence ids (``split_equal``, sequential), so busy ids 0-7 and 40-47 cost two
graph computes a step instead of one (each reads every weight: on the 2-core VM, 16
sequences of an 8-layer 1024-wide F16 model took 63 ms a step together, 92 with one gap,
124 in four blocks). A new request therefore goes where it fills a gap between busy slots,
else next to one, else (nothing busy) to the least recently used slot.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
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
                cache_prompt: bool, busy: Set[int] = frozenset()) -> EngineSlot:
    """The slot a prompt goes to (``idle`` is not empty); ``busy``: the sequence ids of
    the slots that have a request."""
    if cache_prompt and prompt:
        best = max(idle, key=lambda s: (common_prefix(s.cached, prompt), -s.last_used))
        shared = common_prefix(best.cached, prompt)
        if shared and shared / len(prompt) >= similarity:
            return best
    # fewest blocks of busy ids once taken: -2 fills a gap, -1 extends a block
    return min(idle, key=lambda s: (-(s.seq_id - 1 in busy) - (s.seq_id + 1 in busy),
                                    s.last_used))
