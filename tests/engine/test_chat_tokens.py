"""The cut between template text and message text, without a model (hearth.engine.chat_tokens)."""

from __future__ import annotations

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.engine.chat_tokens import Fragment, TemplateMismatch, partition, split_rendered
from hearth.engine.templates import CHATML, GEMMA

SPECIALS = ["<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>", "<bos>"]


def renderer(source: str, roles: list[str]):  # type: ignore[no-untyped-def]
    template = jinja2.Environment().from_string(source)

    def render(contents: list[str]) -> str:
        msgs = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=True)]
        return template.render(messages=msgs, add_generation_prompt=True, bos_token="<bos>")

    return render


TEXT = st.lists(st.sampled_from(list("ab <|>_\n") + ["<|im_start|>", "<end_of_turn>"]), max_size=12).map("".join)


@given(st.lists(TEXT, min_size=1, max_size=4), st.sampled_from([CHATML, GEMMA]))
def test_the_cut_rebuilds_the_prompt_and_never_lets_message_text_become_a_token(contents: list[str], template) -> None:  # type: ignore[no-untyped-def]
    roles = ["system", "user", "assistant", "user"][: len(contents)]
    render = renderer(template.source, roles)
    fragments = split_rendered(render, contents)
    assert "".join(f.text for f in fragments) == render(contents)
    parts = partition(fragments, SPECIALS)
    # Every special token comes from template text: the template writes a known number of them.
    marked = partition(split_rendered(render, ["x"] * len(contents)), SPECIALS)
    assert [p for p in parts if isinstance(p, int)] == [p for p in marked if isinstance(p, int)]
    rebuilt = "".join(p if isinstance(p, str) else SPECIALS[p] for p in parts)
    assert rebuilt == render(contents)


def test_partition_joins_text_around_a_message_like_one_tokenizer_call() -> None:
    frags = [Fragment("<|im_start|>user\n", True), Fragment("hi <|im_end|>", False), Fragment("<|im_end|>\n", True)]
    assert partition(frags, SPECIALS) == [0, "user\nhi <|im_end|>", 1, "\n"]


def test_a_template_that_rewrites_message_text_is_refused() -> None:
    render = renderer("{% for m in messages %}<|im_start|>{{ m['content'] | upper }}<|im_end|>{% endfor %}", ["user"])
    with pytest.raises(TemplateMismatch):
        split_rendered(render, ["hello"])
