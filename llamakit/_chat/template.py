"""``ChatTemplate``: a named chat template, Jinja source or a Python callable.

Plugins register these through the ``llamakit_register_chat_templates`` hook; applications
may pass one wherever a template is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import ChatTemplateError

__all__ = ["ChatRenderer", "ChatTemplate", "ModelMatcher", "is_jinja_source"]


class ChatRenderer(Protocol):
    """A chat template written in Python.

    It is called with the normalised messages (plain dicts, as a Jinja template sees them)
    and keyword arguments: ``add_generation_prompt``, ``tools`` (list of dicts or None),
    ``documents`` (or None), ``bos_token``/``eos_token`` when the model has them, and every
    extra template keyword (``enable_thinking``, ...). It returns the prompt text.
    """

    def __call__(self, messages: list[dict[str, Any]], **kwargs: Any) -> str: ...


#: Decides whether a template applies to a model, from its GGUF metadata
#: (``general.name``, ``general.architecture``, ``tokenizer.chat_template``, ...).
ModelMatcher = Callable[[Mapping[str, str]], bool]


def is_jinja_source(text: str) -> bool:
    """Whether ``text`` is Jinja source rather than a template name."""
    return "{{" in text or "{%" in text or "{#" in text


@dataclass(frozen=True)
class ChatTemplate:
    """A named chat template: Jinja ``source`` or a Python ``render`` callable.

    ``matches`` (optional) receives a model's GGUF metadata; a template whose ``matches``
    returns True replaces that model's own template (see the resolution order in
    ``docs/architecture.md``). ``plugin`` is filled in by llamakit with the name of the
    plugin that registered it.
    """

    name: str
    source: str | None = None
    render: ChatRenderer | None = None
    matches: ModelMatcher | None = None
    description: str = ""
    plugin: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() \
                or is_jinja_source(self.name):
            raise ChatTemplateError(f"a chat template needs a plain name, got {self.name!r}")
        if (self.source is None) == (self.render is None):
            raise ChatTemplateError(
                f"chat template {self.name!r} needs exactly one of source (Jinja) or render "
                "(a Python callable)", template=self.name)
        if self.source is not None and not isinstance(self.source, str):
            raise ChatTemplateError(f"the source of chat template {self.name!r} must be a str",
                                    template=self.name)
        if self.render is not None and not callable(self.render):
            raise ChatTemplateError(f"render of chat template {self.name!r} is not callable",
                                    template=self.name)
        if self.matches is not None and not callable(self.matches):
            raise ChatTemplateError(f"matches of chat template {self.name!r} is not callable",
                                    template=self.name)

    @property
    def origin(self) -> str:
        """Who provided the template, for messages."""
        return f"plugin {self.plugin!r}" if self.plugin else "the application"
