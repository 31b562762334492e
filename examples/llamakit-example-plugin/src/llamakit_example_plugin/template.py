"""``example-plain``: a plain-text chat template, as Jinja source.

Each message becomes ``### <Role>:`` and its content; the generation prompt opens the
assistant's turn. A model's end-of-sequence token ends each assistant turn, so a model
fine-tuned on this format stops by itself.
"""

from __future__ import annotations

__all__ = ["EXAMPLE_PLAIN"]

EXAMPLE_PLAIN = (
    "{% for message in messages %}"
    "{{ '### ' ~ (message['role'] | capitalize) ~ ':\\n' ~ (message['content'] | trim) }}"
    "{% if message['role'] == 'assistant' and eos_token is defined %}{{ eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)
