"""The batched decoder with the real model (smollm2-135m, loaded once for the module): texts in a
batch against texts alone, cancellation, admission latency, seeded sampling, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hearth.engine.batch import BatchDecoder
from hearth.engine.batch_rules import chunks_left
from hearth.engine.batch_slot import SlotResult
from hearth.engine.load import load_model
from hearth.engine.protocol import RequestError

pytestmark = pytest.mark.slow
TOKENS = 20
PROMPTS = {
    "moon": "A short essay about the Moon.\n\nThe Moon is",
    "bees": "List three facts about bees:\n1.",
    "glass": "Glass is made by",
    "trains": "The first steam trains were",
}
LONG = "Here are some notes about rivers. " + "They are old, and rivers are older. " * 16 + "In short, rivers are"


@dataclass
class Reply:
    ids: list[int] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    first_step: int | None = None
    finish_step: int | None = None
    results: list[SlotResult] = field(default_factory=list)


@pytest.fixture(scope="module")
def model(smollm2_path: Path) -> Iterator[Any]:
    m = load_model(str(smollm2_path))
    yield m
    m.close()


def decoder(model: Any, parallel: int = 4, mixed: bool = False) -> BatchDecoder:
    return BatchDecoder(model, n_ctx=512 * parallel, n_threads=1, parallel=parallel, mixed=mixed)


def run(dec: BatchDecoder, admit: dict[int, list[tuple[str, str, dict[str, Any]]]],
        cancel: dict[int, str] | None = None) -> dict[str, Reply]:
    """Step until every request ends: at step s, admit admit[s] (key, prompt, sampling) and cancel
    cancel[s]; the replies by key, with the step of each first token (counted from admission)."""
    replies: dict[str, Reply] = {}
    step = 0
    while step <= max(admit) or dec.active:
        for key, prompt, kw in admit.get(step, []):
            assert dec.admit(key, dec.tokenize(prompt), **{"max_tokens": TOKENS, **kw}) is not None
            replies[key] = Reply()
        if cancel and step in cancel:
            assert dec.cancel(cancel[step])
        for r in dec.step():
            reply = replies[r.key]
            reply.results.append(r)
            reply.text += r.text
            if r.sampled is not None:
                reply.ids.append(r.sampled)
                if reply.first_step is None:
                    reply.first_step = r.steps
            if r.finish is not None:
                assert reply.finish is None
                reply.finish, reply.finish_step = r.finish, step
        step += 1
        assert step < 500
    return replies


GREEDY: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0, "seed": 1}


@pytest.fixture(scope="module")
def alone(model: Any) -> dict[str, Reply]:
    """Each prompt's greedy reply with nothing else in the decoder."""
    dec = decoder(model)
    out = {}
    for key, prompt in PROMPTS.items():
        out.update(run(dec, {0: [(key, prompt, GREEDY)]}))
    dec.close()
    return out


def test_four_concurrent_greedy_sequences_match_their_solo_texts(model: Any, alone: dict[str, Reply]) -> None:
    dec = decoder(model)
    together = run(dec, {0: [(k, p, GREEDY) for k, p in PROMPTS.items()]})
    staggered = run(dec, {i * 3: [(k, p, GREEDY)] for i, (k, p) in enumerate(PROMPTS.items())})
    dec.close()
    dec = decoder(model, mixed=True)  # each prompt chunk in the same llama_decode as the generating tokens
    mixed = run(dec, {i * 2: [(k, p, GREEDY)] for i, (k, p) in enumerate(PROMPTS.items())})
    dec.close()
    for key in PROMPTS:
        assert alone[key].ids and alone[key].finish in ("length", "stop")
        assert together[key].ids == alone[key].ids, key
        assert together[key].text == alone[key].text
        assert staggered[key].ids == alone[key].ids, key
        assert mixed[key].ids == alone[key].ids, key


def test_cancelling_one_mid_stream_leaves_the_others_unchanged(model: Any, alone: dict[str, Reply]) -> None:
    dec = decoder(model)
    replies = run(dec, {0: [(k, p, GREEDY) for k, p in PROMPTS.items()]}, cancel={5: "bees"})
    bees = replies["bees"]
    assert bees.finish == "cancelled" and bees.finish_step == 5  # freed in the step it was cancelled before
    assert 1 <= len(bees.ids) < TOKENS and bees.ids == alone["bees"].ids[:len(bees.ids)]
    for key in PROMPTS.keys() - {"bees"}:
        assert replies[key].ids == alone[key].ids, key
    assert dec.active == 0 and dec.has_room()
    assert not dec.cancel("bees")  # gone
    dec.close()


def test_a_request_admitted_mid_stream_gets_its_first_token_within_its_chunks_plus_one(model: Any) -> None:
    dec = decoder(model)
    n_long = len(dec.tokenize(LONG))
    chunks = chunks_left(0, n_long, dec.chunk)
    assert chunks >= 3
    replies = run(dec, {0: [("moon", PROMPTS["moon"], GREEDY), ("bees", PROMPTS["bees"], GREEDY)],
                        4: [("long", LONG, GREEDY), ("glass", PROMPTS["glass"], GREEDY)]})
    dec.close()
    # two admitting at once: the short one goes first, the long one still within its chunks + 1
    assert replies["glass"].first_step == 1
    first = replies["long"].first_step
    assert first is not None and first <= chunks + 1
    # the streaming ones were never starved: a token at every step from their first until they ended
    for key in ("moon", "bees"):
        steps = [r.steps for r in replies[key].results]
        assert steps == list(range(steps[0], steps[0] + len(steps))), key
        assert replies[key].finish_step is not None and replies[key].finish_step > 5


def test_seeded_sampling_reproduces_per_slot(model: Any) -> None:
    sampled = [{"temperature": 0.8, "top_p": 0.95, "seed": s} for s in (7, 8, 9)]
    keys = list(PROMPTS)[:3]
    dec = decoder(model)
    a = run(dec, {0: [(k, PROMPTS[k], kw) for k, kw in zip(keys, sampled, strict=True)]})
    b = run(dec, {2 * i: [(k, PROMPTS[k], kw)] for i, (k, kw) in enumerate(zip(keys, sampled, strict=True))})
    solo = {}
    for k, kw in zip(keys, sampled, strict=True):
        solo.update(run(dec, {0: [(k, PROMPTS[k], kw)]}))
    dec.close()
    for key in keys:
        assert a[key].ids == b[key].ids == solo[key].ids, key
    assert len({tuple(a[k].ids) for k in keys}) == 3


def test_refusals_and_a_full_decoder(model: Any) -> None:
    dec = decoder(model, parallel=2)
    with pytest.raises(RequestError) as err:
        dec.admit("huge", list(range(10, 10 + dec.n_ctx_seq)))
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(RequestError):
        dec.admit("empty", [])
    assert dec.admit("a", dec.tokenize("Hi"), max_tokens=2) == 0
    assert dec.admit("b", dec.tokenize("Hello"), max_tokens=0) == 1
    assert dec.admit("c", dec.tokenize("Hey"), max_tokens=2) is None
    with pytest.raises(ValueError):
        dec.admit("a", dec.tokenize("Hi"))
    results = dec.step() + dec.step()  # one prompt chunk per step: a's, then b's
    done = {r.key: r for r in results if r.finish}
    assert done["b"].finish == "length" and done["b"].generated == 0 and done["b"].sampled is None
    assert done["a"].finish == "length" and done["a"].generated == 2
    assert dec.active == 0
    assert dec.admit("c", dec.tokenize("Hey"), max_tokens=2) == 0  # the lowest free sequence id
    dec.close()


def test_a_shared_prefix_is_reused_and_changes_no_text(model: Any) -> None:
    """A finished request's whole prompt chunks stay in its sequence; a later prompt that starts
    with them goes to that sequence and skips them, with the same greedy text as a fresh one."""
    system = LONG  # several whole chunks
    first, second = system + " Rivers", system + " Seas are"
    fresh = decoder(model, parallel=2)
    alone = run(fresh, {0: [("second", second, GREEDY)]})
    fresh.close()
    dec = decoder(model, parallel=2)
    run(dec, {0: [("first", first, GREEDY)]})
    n_second = len(dec.tokenize(second))
    reply: dict[str, Reply] = {}
    assert dec.admit("second", dec.tokenize(second), max_tokens=TOKENS, **GREEDY) is not None
    assert dec.last_reused >= 2 * dec.chunk and dec.last_reused % dec.chunk == 0
    assert dec.last_reused < n_second
    reply["second"] = Reply()
    while dec.active:
        for r in dec.step():
            reply[r.key].text += r.text
            if r.sampled is not None:
                reply[r.key].ids.append(r.sampled)
    assert reply["second"].ids == alone["second"].ids
    dec.forget()
    assert dec.admit("third", dec.tokenize(second), max_tokens=1) is not None and dec.last_reused == 0
    dec.close()


def _drain(dec: BatchDecoder) -> dict[str, Reply]:
    replies: dict[str, Reply] = {}
    while dec.active:
        for r in dec.step():
            reply = replies.setdefault(r.key, Reply())
            if r.sampled is not None:
                reply.ids.append(r.sampled)
    return replies


def test_reuse_by_token_takes_the_whole_shared_history_and_exact_requests_stay_exact(model: Any) -> None:
    """Not exact: a chat's next turn skips every token its sequence holds, the earlier reply
    included (llama-server's prompt cache). Exact: only whole chunks computed as a fresh prompt's,
    even after a loose request left others behind, and the text is the fresh cache's."""
    first, second = LONG + " Rivers", LONG + " Seas are"
    fresh = decoder(model, parallel=1)
    alone = run(fresh, {0: [("second", second, GREEDY)]})
    fresh.close()
    dec = decoder(model, parallel=1)
    turn1 = dec.tokenize(first)
    reply = run(dec, {0: [("t1", first, GREEDY)]})["t1"].ids
    assert len(reply) == TOKENS
    turn2 = turn1 + reply + dec.tokenize(" And then")[1:]
    assert dec.admit("t2", turn2, max_tokens=4, exact=False, **GREEDY) == 0
    assert dec.last_reused == len(turn1) + TOKENS - 1  # the last sampled token was never decoded
    _drain(dec)
    assert dec.admit("t3", turn2, max_tokens=4, **GREEDY) == 0
    assert dec.last_reused == len(turn1) // dec.chunk * dec.chunk  # exact: the first turn's whole chunks
    _drain(dec)
    # A loose request reuses up to where the prompts part, mid-chunk, and evaluates on from there.
    assert dec.admit("loose", dec.tokenize(second), max_tokens=4, exact=False, **GREEDY) == 0
    shared = dec.last_reused
    assert shared % dec.chunk and shared > len(dec.tokenize(LONG)) - 2
    _drain(dec)
    assert dec.admit("exact", dec.tokenize(second), max_tokens=TOKENS, **GREEDY) == 0
    assert dec.last_reused == shared // dec.chunk * dec.chunk
    assert _drain(dec)["exact"].ids == alone["second"].ids
    dec.close()


def test_forced_tokens_are_fed_as_if_sampled_and_watched(model: Any, alone: dict[str, Reply]) -> None:
    """A resumed reply (forced = its first ids) goes on exactly as it would have; a watched slot
    that does not generate sees, before each forced token, the logits that chose it."""
    dec = decoder(model)
    ids = alone["moon"].ids
    head = ids[:6]
    seen: list[int] = []

    def watch(i: int, row: int) -> None:
        seen.append(int(dec.logits(row).argmax()))

    dec.admit("resumed", dec.tokenize(PROMPTS["moon"]), max_tokens=TOKENS - len(head), forced=head, **GREEDY)
    dec.admit("scored", dec.tokenize(PROMPTS["moon"]), forced=ids, watch=watch, then_generate=False)
    dec.admit("bees", dec.tokenize(PROMPTS["bees"]), max_tokens=TOKENS, **GREEDY)
    got: dict[str, list[int]] = {"resumed": [], "scored": [], "bees": []}
    finish: dict[str, str | None] = {}
    while dec.active:
        for r in dec.step():
            if r.sampled is not None:
                got[r.key].append(r.sampled)
            if r.finish:
                finish[r.key] = r.finish
    dec.close()
    assert head + got["resumed"] == ids
    assert seen == ids  # greedy: each forced id is its row's best
    assert got["scored"] == [] and finish["scored"] == "stop"
    assert got["bees"] == alone["bees"].ids


def test_a_grammar_constrains_each_slot_and_survives_a_resume(model: Any) -> None:
    """A slot with a GBNF grammar draws only what it allows (greedy or sampled), next to a slot
    without one; a resumed reply's grammar goes on from after its forced tokens."""
    digits = 'root ::= "Answer: " [0-9] [0-9] [0-9] "."'
    dec = decoder(model, parallel=3)
    prompt = dec.tokenize(PROMPTS["bees"])
    dec.admit("greedy", prompt, max_tokens=30, grammar=digits, **GREEDY)
    dec.admit("sampled", prompt, max_tokens=30, grammar=digits, temperature=1.0, top_p=1.0, seed=3)
    dec.admit("free", dec.tokenize(PROMPTS["moon"]), max_tokens=8, **GREEDY)
    got: dict[str, str] = {"greedy": "", "sampled": "", "free": ""}
    ids: dict[str, list[int]] = {"greedy": [], "sampled": [], "free": []}
    finish: dict[str, str] = {}
    while dec.active:
        for r in dec.step():
            got[r.key] += r.text
            if r.sampled is not None:
                ids[r.key].append(r.sampled)
            if r.finish:
                finish[r.key] = r.finish
    import re
    for key in ("greedy", "sampled"):
        assert re.fullmatch(r"Answer: [0-9]{3}\.", got[key]), got[key]
        assert finish[key] == "stop"
    assert not got["free"].startswith("Answer")
    head = ids["greedy"][:2]
    dec.admit("resumed", prompt, max_tokens=30, grammar=digits, forced=head, **GREEDY)
    tail = ""
    while dec.active:
        tail += "".join(r.text for r in dec.step())
    assert dec.detokenize(head).decode() + tail == got["greedy"]
    with pytest.raises(RequestError, match="does not parse"):
        dec.admit("bad", prompt, grammar='root ::= "unclosed')
    with pytest.raises(RequestError, match="grammar"):
        dec.admit("empty", prompt, grammar=" ")
    assert dec.active == 0
    dec.close()


def test_logprobs_are_the_models_own_and_change_no_token(model: Any, alone: dict[str, Reply]) -> None:
    """Each reported id has its logprob and the best alternatives, best first; greedy picks the
    best; asking for them changes no token; a bad count is refused."""
    import math

    dec = decoder(model, parallel=2)
    assert dec.admit("moon", dec.tokenize(PROMPTS["moon"]), max_tokens=TOKENS, logprobs=3, **GREEDY) is not None
    assert dec.admit("hot", dec.tokenize(PROMPTS["bees"]), max_tokens=TOKENS, logprobs=0,
                     temperature=1.5, top_p=1.0, seed=3) is not None
    ids: dict[str, list[int]] = {"moon": [], "hot": []}
    lps: dict[str, list[Any]] = {"moon": [], "hot": []}
    while dec.active:
        for r in dec.step():
            assert len(r.lps) == len(r.ids)
            ids[r.key] += r.ids
            lps[r.key] += r.lps
    assert ids["moon"] == alone["moon"].ids[:len(ids["moon"])] and len(ids["moon"]) >= TOKENS - 1
    for chosen, top, top_lps in lps["moon"]:
        assert len(top) == 3 and list(top_lps) == sorted(top_lps, reverse=True)
        assert chosen == top_lps[0] and all(lp <= 0 for lp in top_lps)
        assert sum(math.exp(lp) for lp in top_lps) <= 1 + 1e-9
    assert all(top == () and chosen <= 0 for chosen, top, _ in lps["hot"])
    assert any(chosen < -0.5 for chosen, _, _ in lps["hot"])  # hot sampling takes unlikely tokens
    with pytest.raises(RequestError, match="top_logprobs"):
        dec.admit("bad", dec.tokenize("x"), logprobs=21)
    dec.close()
