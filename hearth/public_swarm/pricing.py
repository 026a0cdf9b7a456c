"""What a model costs on the public swarm: one published formula, integer arithmetic throughout.

The coordinator prices every request with `price_of` and charges the ledger in **micro-credits**
(1 credit = 1,000,000 µcr). A price is an integer number of micro-credits per token, which is the
same number as **credits per million tokens** (the unit people read at `GET /v1/prices` and write
in `--max-price` / HEARTH_MAX_PRICE). Every step is integer arithmetic, so the coordinator, a
worker and a requester compute the same price on any machine, and a cost is `tokens * price`
exactly, with no rounding to argue about.

The formula follows AI Horde's kudos for text (Haidra-Org/AI-Horde,
horde/classes/kobold/processing_generation.py, `get_gen_kudos`): a reward proportional to the
parameter count in billions, times a bonus `(max(B, 13) / 13) ** 0.2` for models above 13 B,
which are rarer and harder to host. Horde assumes 4-bit weights; hearth also knows the file
type, and a decoded token reads every weight once, so the price scales with bits per weight
(an 8-bit file costs about twice a 4-bit one). Horde's context multiplier is left out: a hearth
request pays for its prompt tokens directly. Prompt and completion tokens cost the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hearth.errors import InvalidRequest
from hearth.models.catalogue import CATALOGUE, CatalogueEntry
from hearth.models.facts import ModelFacts

MICRO_PER_CREDIT = 1_000_000
"""Ledger amounts are integers in micro-credits (µcr)."""
BASE_CREDITS_PER_MTOK = 1000
"""Credits per million tokens for one billion 4-bit parameters (below the size bonus)."""
REFERENCE_MILLIBITS = 4000
"""Horde's reference weight: 4 bits."""
BONUS_FROM_PARAMS = 13_000_000_000
"""Above this many parameters the size bonus applies (Horde's 13 B)."""
BONUS_ROOT = 5
"""The bonus is the fifth root (Horde's ** 0.2) of params / 13 B."""

MAX_PARAMS = 10**13
"""Ten trillion parameters: anything claimed above this is an error, not a model."""
MIN_MILLIBITS, MAX_MILLIBITS = 1000, 32000
MAX_TOKENS = 10_000_000
"""More tokens than any context window holds: a larger count in a request is an error."""

BITS_PER_WEIGHT: dict[str, int] = {
    "F32": 32000, "F16": 16000, "BF16": 16000, "Q8_0": 8500, "Q6_K": 6563, "Q5_1": 6000,
    "Q5_K_M": 5700, "Q5_K_S": 5500, "Q5_0": 5500, "Q4_1": 5000, "Q4_K_M": 4850, "Q4_K_S": 4500,
    "Q4_0": 4500, "Q3_K_L": 4300, "Q3_K_M": 3900, "Q3_K_S": 3438, "Q2_K": 2625,
}
"""Bits per weight, in thousandths, of llama.cpp's file types: the block format's size (Q4_0 holds
32 weights in 18 bytes: 4.5 bits), and for the K-quant mixes (_S, _M, _L) the usual average. Part
of the published formula: a price is reproducible from the name, not from a measured file."""

FORMULA = (
    "credits per million tokens = ceil(1000 * P * (b / 4) * max(1, P / 13) ** (1/5)), at least 1; "
    "P = parameters in billions, b = bits per weight of the quantisation (Q4_K_M 4.85, Q8_0 8.5, "
    "F16 16; see bits_per_weight). Computed in integers: b in thousandths of a bit, the fifth root "
    "rounded down to 6 decimals. The same number is the price in micro-credits per token; a request "
    "holds (prompt tokens + max_tokens) * price micro-credits and is charged (prompt tokens + "
    "completion tokens) * price. Modelled on AI Horde's text kudos (parameters / 100 per token, "
    "times (max(P, 13) / 13) ** 0.2), scaled by bits per weight because a token reads every weight."
)


class PriceAboveCeiling(InvalidRequest):
    """The model's price is above the requester's ceiling (--max-price / HEARTH_MAX_PRICE).

    An InvalidRequest, not OutOfCapacity: waiting or widening the radius never helps (prices are a
    formula, not a market), and escalation must not treat it as "try further". The requester
    changes the request: a higher ceiling or a smaller model."""

    http_status = 402
    code = "price_above_ceiling"

    def __init__(self, message: str, *, price: int | None = None, ceiling: int | None = None) -> None:
        """`price` and `ceiling` in credits per million tokens; None when rebuilt from a
        coordinator's error body, whose message names both."""
        super().__init__(message, param="max_price")
        self.price = price
        self.ceiling = ceiling


@dataclass(frozen=True)
class Price:
    """A model's price: `per_token` micro-credits per token, the same number as credits per
    million tokens. `n_params` and `millibits` are the inputs it came from (shown in the table)."""

    per_token: int
    n_params: int
    millibits: int

    @property
    def credits_per_mtok(self) -> int:
        return self.per_token


def _show(value: object) -> str:
    """A short, safe picture of a value from a request (str() of a huge int raises)."""
    if type(value) is int and not -(10**30) < value < 10**30:
        return "a number too large"
    return repr(value)[:40] if isinstance(value, str | int | float | bool | None) else type(value).__name__


def bits_per_weight(quantization: str) -> int:
    """Thousandths of a bit per weight for a quantisation name (case-insensitive)."""
    key = quantization.strip().upper() if isinstance(quantization, str) else ""
    if key not in BITS_PER_WEIGHT:
        known = ", ".join(sorted(BITS_PER_WEIGHT))
        raise InvalidRequest(f"Quantisation {_show(quantization)} has no price; known: {known}.",
                             param="quantization")
    return BITS_PER_WEIGHT[key]


def _count(value: object, name: str, low: int, high: int) -> int:
    """An int in [low, high]; bools and floats are refused (they arrive from JSON)."""
    if type(value) is not int or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low:,} to {high:,}, not {_show(value)}.",
                             param=name)
    return value


def _iroot(x: int, n: int) -> int:
    """floor(x ** (1/n)) for x >= 0, exactly."""
    r = int(round(x ** (1.0 / n)))
    while r > 0 and r**n > x:
        r -= 1
    while (r + 1) ** n <= x:
        r += 1
    return r


def _bonus_micro(n_params: int) -> int:
    """max(1, n_params / 13 B) ** (1/5), times 10^6, rounded down: monotone in n_params."""
    if n_params <= BONUS_FROM_PARAMS:
        return 10**6
    return _iroot(n_params * 10 ** (6 * BONUS_ROOT) // BONUS_FROM_PARAMS, BONUS_ROOT)


def price_of(n_params: int, millibits: int) -> Price:
    """The price of a model with `n_params` weights at `millibits` thousandths of a bit each."""
    n_params = _count(n_params, "n_params", 1, MAX_PARAMS)
    millibits = _count(millibits, "millibits", MIN_MILLIBITS, MAX_MILLIBITS)
    num = BASE_CREDITS_PER_MTOK * n_params * millibits * _bonus_micro(n_params)
    den = 10**9 * REFERENCE_MILLIBITS * 10**6
    return Price(max(1, -(-num // den)), n_params, millibits)


def price_of_quant(n_params: int, quantization: str) -> Price:
    return price_of(n_params, bits_per_weight(quantization))


def price_of_facts(facts: ModelFacts) -> Price:
    """The price of a GGUF from its header facts. A file type outside the table (a new or
    unknown quantisation) is priced at its measured bits per weight: file bytes * 8 / params."""
    n_params = _count(facts.n_params, "n_params", 1, MAX_PARAMS)
    if facts.quantization.upper() in BITS_PER_WEIGHT:
        return price_of(n_params, BITS_PER_WEIGHT[facts.quantization.upper()])
    measured = facts.file_bytes * 8000 // n_params
    return price_of(n_params, min(MAX_MILLIBITS, max(MIN_MILLIBITS, measured)))


def price_of_entry(entry: CatalogueEntry) -> Price:
    """The price of a catalogue model from its published size (params_b) and quantisation."""
    return price_of_quant(round(entry.params_b * 10**9), entry.quant)


def max_cost(price: Price, prompt_tokens: int, max_tokens: int) -> int:
    """Micro-credits a request holds before it runs: every prompt token plus max_tokens."""
    prompt_tokens = _count(prompt_tokens, "prompt_tokens", 0, MAX_TOKENS)
    max_tokens = _count(max_tokens, "max_tokens", 0, MAX_TOKENS)
    return (prompt_tokens + max_tokens) * price.per_token


def served_cost(price: Price, prompt_tokens: int, completion_tokens: int, max_tokens: int) -> int:
    """Micro-credits charged for what was served. Completion tokens beyond max_tokens (a worker
    that overran or overstates) are not charged, so this never exceeds `max_cost`: the hold
    always covers the settlement."""
    prompt_tokens = _count(prompt_tokens, "prompt_tokens", 0, MAX_TOKENS)
    completion_tokens = _count(completion_tokens, "completion_tokens", 0, MAX_TOKENS)
    max_tokens = _count(max_tokens, "max_tokens", 0, MAX_TOKENS)
    return (prompt_tokens + min(completion_tokens, max_tokens)) * price.per_token


def parse_ceiling(value: object) -> int:
    """A price ceiling as typed (`--max-price 5000`, HEARTH_MAX_PRICE=5000) or sent in JSON:
    whole credits per million tokens, 1 or more."""
    text = value.strip().replace("_", "").replace(",", "") if isinstance(value, str) else None
    if text is not None and text.isascii() and text.isdigit() and len(text) <= 18:
        value = int(text)
    if type(value) is not int or not 1 <= value <= 10**18:
        raise InvalidRequest(f"--max-price must be a whole number of credits per million tokens (1 or more), "
                             f"not {_show(value)}; see GET /v1/prices for what models cost.",
                             param="max_price")
    return value


def check_ceiling(price: Price | int, ceiling: int | None, *, model: str | None = None) -> None:
    """Refuse a request whose price (credits per million tokens) is above the requester's ceiling
    in the same unit; None means no ceiling was set."""
    per_mtok = price.per_token if isinstance(price, Price) else price
    if ceiling is None or per_mtok <= ceiling:
        return
    what = f"{model} costs" if model else "This model costs"
    raise PriceAboveCeiling(
        f"{what} {per_mtok:,} credits per million tokens, above your ceiling of {ceiling:,} "
        f"(--max-price / HEARTH_MAX_PRICE). Raise the ceiling to at least {per_mtok:,}, or choose "
        "a smaller model (GET /v1/prices lists them).",
        price=per_mtok, ceiling=ceiling,
    )


def price_table() -> dict[str, Any]:
    """The catalogue's prices and the formula, as `GET /v1/prices` serves them (JSON-ready)."""
    rows = []
    for entry in CATALOGUE.values():
        p = price_of_entry(entry)
        rows.append({
            "model": entry.alias,
            "family": entry.family,
            "parameters": p.n_params,
            "quantization": entry.quant,
            "bits_per_weight": p.millibits / 1000,
            "credits_per_million_tokens": p.credits_per_mtok,
            "micro_credits_per_token": p.per_token,
        })
    rows.sort(key=lambda r: (r["credits_per_million_tokens"], r["model"]))
    return {
        "object": "list",
        "unit": "credits per million tokens (= micro-credits per token); 1 credit = 1,000,000 micro-credits",
        "formula": FORMULA,
        "bits_per_weight": {k: v / 1000 for k, v in BITS_PER_WEIGHT.items()},
        "data": rows,
    }
