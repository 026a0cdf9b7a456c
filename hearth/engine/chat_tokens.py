"""Which parts of a rendered chat prompt are the template's and which are the people's: pure.

The chat template writes control tokens (`<|im_start|>`, `<start_of_turn>`) around each message.
Tokenizing the whole rendered prompt with special-token parsing would also turn a control token
*typed by a user* into a real one, letting message text forge turns. So the prompt is cut into
fragments: template text, where special tokens are parsed, and message text, which is always
plain text. The cut mirrors llama.cpp's own partition (split on special-token strings, longest
first), so a conversation without special-token text tokenizes exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


def _marker(i: int) -> str:
    # Private-use characters: no tokenizer's special token and no template logic contains them.
    return f"\ue000{i}\ue001"


@dataclass(frozen=True)
class Fragment:
    text: str
    special: bool
    """Parse special tokens in this text (template text), or not (message text)."""


class TemplateMismatch(ValueError):
    """The template treats message text in a way the cut cannot follow."""


def split_rendered(render: Callable[[list[str]], str], contents: Sequence[str],
                   real: str | None = None) -> list[Fragment]:
    """Fragments of the prompt `render(contents)` (pass it as `real` if it is rendered already),
    found by rendering once more with a marker in place of each message's text. A template may
    trim a message; anything else it does to the text (or a template whose branches depend on
    it) raises TemplateMismatch."""
    real = render(list(contents)) if real is None else real
    marked = render([_marker(i) for i in range(len(contents))])
    pieces: list[Fragment] = []
    pos = 0  # in `real`
    rest = marked
    while True:
        start = rest.find("\ue000")
        template = rest if start < 0 else rest[:start]
        if not real.startswith(template, pos):
            raise TemplateMismatch("the template's text differs around a message")
        if template:
            pieces.append(Fragment(template, True))
        pos += len(template)
        if start < 0:
            break
        end = rest.find("\ue001", start)
        if end < 0 or not rest[start + 1:end].isdigit():
            raise TemplateMismatch("a message marker was cut")
        content = contents[int(rest[start + 1:end])]
        rest = rest[end + 1:]
        following = rest.split("\ue000", 1)[0]
        for shown in dict.fromkeys((content, content.strip(), content.lstrip(), content.rstrip())):
            if real.startswith(shown + following, pos):
                break
        else:
            raise TemplateMismatch("the template changes a message's text")
        if shown:
            pieces.append(Fragment(shown, False))
        pos += len(shown)
    if pos != len(real):
        raise TemplateMismatch("the template's text differs at the end")
    return pieces


def partition(fragments: Sequence[Fragment], specials: Sequence[str]) -> list[str | int]:
    """llama.cpp's partition, for our fragments: template text is cut at special-token strings
    (index into `specials`, longest first as llama.cpp tries them); text on either side of a
    message joins the message into one plain-text run, as it would be in one tokenizer call."""
    order = sorted(range(len(specials)), key=lambda i: -len(specials[i]))
    out: list[str | int] = []

    def add_text(text: str) -> None:
        if not text:
            return
        if out and isinstance(out[-1], str):
            out[-1] += text
        else:
            out.append(text)

    for frag in fragments:
        if not frag.special:
            add_text(frag.text)
            continue
        parts: list[str | int] = [frag.text]
        for i in order:
            token = specials[i]
            if not token:
                continue
            cut: list[str | int] = []
            for part in parts:
                if not isinstance(part, str):
                    cut.append(part)
                    continue
                while (at := part.find(token)) >= 0:
                    cut += [part[:at], i] if at else [i]
                    part = part[at + len(token):]
                if part:
                    cut.append(part)
            parts = cut
        for part in parts:
            if isinstance(part, str):
                add_text(part)
            else:
                out.append(part)
    return out
