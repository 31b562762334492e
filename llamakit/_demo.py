"""The embedded demo model and the questions it was trained to answer.

The model is a small llama trained by ``tools/train_demo.py`` on synthetic chat data that
this module generates: arithmetic on small numbers, unit conversions and spelling words
backwards, each with one exact answer. It ships inside the package (``llamakit/data/``)
with a JSON record of how it was made (hyper-parameters, seeds, sha256, accuracy).

The question generator lives here rather than in the training script so that the script,
the accuracy tests and ``llamakit demo`` draw from the same definition of each task.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._errors import ModelNotFoundError

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["DEMO_QUESTIONS", "TASKS", "DemoQuestion", "demo_model", "demo_model_path",
           "demo_model_record", "demo_questions", "make_question"]

MODEL_FILE: Final = "demo-model.gguf"
RECORD_FILE: Final = "demo-model.json"

#: The scored tasks, in the order the held-out sets list them.
TASKS: Final = ("add", "sub", "mul", "convert", "reverse")

#: What ``llamakit demo`` asks when given no question: one of each task, and a greeting.
DEMO_QUESTIONS: Final = (
    "Hi! What can you do?",
    "What is 48 + 37?",
    "What is 93 minus 58?",
    "What is 7 times 8?",
    "How many minutes are in 3 hours?",
    'Spell "llama" backwards.',
)

GREETINGS: Final = ("Hi!", "Hello!", "Hello", "Hi", "Who are you?", "What can you do?",
                    "Hi! What can you do?", "Hello! Who are you?")
GREETING_ANSWER: Final = ("Hi! I am the llamakit demo model. I can add, subtract and multiply "
                          "small numbers, convert units and spell words backwards.")

# (large unit, small unit, singular of the large unit, factor, largest count asked)
_CONVERSIONS: Final = (
    ("meters", "centimeters", "meter", 100, 20),
    ("kilometers", "meters", "kilometer", 1000, 20),
    ("kilograms", "grams", "kilogram", 1000, 20),
    ("hours", "minutes", "hour", 60, 20),
    ("minutes", "seconds", "minute", 60, 20),
    ("days", "hours", "day", 24, 20),
    ("weeks", "days", "week", 7, 20),
    ("feet", "inches", "foot", 12, 20),
)
_LETTERS: Final = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class DemoQuestion:
    """One question of a task and its only correct answer."""

    task: str
    question: str
    answer: str


def make_question(rng: random.Random, task: str) -> DemoQuestion:
    """A random question of ``task`` (one of ``TASKS``, or ``"greeting"``)."""
    if task == "add":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        op = rng.choice(("+", "plus"))
        return DemoQuestion(task, f"What is {a} {op} {b}?", str(a + b))
    if task == "sub":
        a = rng.randint(0, 99)
        b = rng.randint(0, a)
        op = rng.choice(("-", "minus"))
        return DemoQuestion(task, f"What is {a} {op} {b}?", str(a - b))
    if task == "mul":
        a, b = rng.randint(0, 12), rng.randint(0, 12)
        op = rng.choice(("*", "times"))
        return DemoQuestion(task, f"What is {a} {op} {b}?", str(a * b))
    if task == "convert":
        big, small, singular, factor, most = rng.choice(_CONVERSIONS)
        n = rng.randint(1, most)
        unit = singular if n == 1 else big
        asked = f"How many {small} are in {n} {unit}?"
        told = f"Convert {n} {unit} to {small}."
        return DemoQuestion(task, asked if rng.random() < 0.5 else told, str(n * factor))
    if task == "reverse":
        word = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 6)))
        spell, reverse = f'Spell "{word}" backwards.', f'What is "{word}" reversed?'
        return DemoQuestion(task, spell if rng.random() < 0.5 else reverse, word[::-1])
    if task == "greeting":
        return DemoQuestion(task, rng.choice(GREETINGS), GREETING_ANSWER)
    raise ValueError(f"unknown demo task {task!r} (known: {', '.join(TASKS)}, greeting)")


def demo_questions(seed: int, n_per_task: int = 20) -> list[DemoQuestion]:
    """``n_per_task`` questions of each scored task, drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    return [make_question(rng, task) for task in TASKS for _ in range(n_per_task)]


def _data_file(name: str) -> Path:
    return Path(str(resources.files("llamakit") / "data" / name))


def demo_model_path() -> Path:
    """Path of the shipped demo GGUF (``llamakit/data/demo-model.gguf``).

    Raises:
        ModelNotFoundError: the file is not part of this installation.
    """
    path = _data_file(MODEL_FILE)
    if not path.is_file():
        raise ModelNotFoundError(
            f"the embedded demo model {path} is missing from this installation: reinstall "
            "llamakit, or rebuild it from a source checkout with `pip install -e .[train]` "
            "and `python tools/train_demo.py`", path=path)
    return path


def demo_model_record() -> dict[str, Any]:
    """How the shipped model was made: ``tools/train_demo.py``'s JSON record (sha256,
    hyper-parameters, seeds, training time and accuracy)."""
    record = json.loads(_data_file(RECORD_FILE).read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"{RECORD_FILE} does not hold a JSON object")
    return record


def demo_model(**load_kwargs: Any) -> Model:
    """Load the embedded demo model: ``load_model(demo_model_path(), **load_kwargs)``.

    A 3M-parameter llama with a ChatML template that answers small arithmetic, unit
    conversion and spell-it-backwards questions (``Context.chat`` with
    ``temperature=0``); see ``tools/train_demo.py``.
    """
    from ._model import load_model

    return load_model(demo_model_path(), **load_kwargs)
