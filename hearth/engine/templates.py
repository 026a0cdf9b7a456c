"""Chat templates for GGUFs that carry none, by architecture.

Most GGUFs embed their template (tokenizer.chat_template) and hearth uses it. Some conversions
(the Gemma 3 270M package among them) leave it out; these are the families' published formats.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    source: str
    stop: tuple[str, ...] = ()


CHATML = Template(
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    stop=("<|im_end|>",),
)

# Gemma has no system role: a system message is folded into the first user turn.
GEMMA = Template(
    "{{ bos_token }}{% set sys = namespace(text='') %}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set sys.text = m['content'] + '\n\n' %}"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{% if m['role'] != 'assistant' %}{{ sys.text }}{% set sys.text = '' %}{% endif %}"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
    stop=("<end_of_turn>",),
)

BY_ARCHITECTURE = {"gemma": GEMMA, "gemma2": GEMMA, "gemma3": GEMMA}


def template_for(metadata: dict[str, str]) -> Template:
    """The GGUF's own template if it has one, else the family's, else ChatML."""
    own = metadata.get("tokenizer.chat_template")
    if own:
        return Template(own)
    return BY_ARCHITECTURE.get(metadata.get("general.architecture", ""), CHATML)
