"""Pricing rules (hearth.public_swarm.pricing): monotone, integer, bounded, and a ceiling refusal
that names both numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.errors import InvalidRequest, OutOfCapacity
from hearth.models.catalogue import CATALOGUE
from hearth.models.facts import ModelFacts, read_facts
from hearth.public_swarm import pricing
from hearth.public_swarm.pricing import (
    BITS_PER_WEIGHT,
    MAX_MILLIBITS,
    MAX_PARAMS,
    MAX_TOKENS,
    MIN_MILLIBITS,
    Price,
    PriceAboveCeiling,
    check_ceiling,
    max_cost,
    parse_ceiling,
    price_of,
    price_of_entry,
    price_of_facts,
    price_of_quant,
    price_table,
    served_cost,
)

params = st.integers(1, MAX_PARAMS)
millibits = st.integers(MIN_MILLIBITS, MAX_MILLIBITS)
tokens = st.integers(0, MAX_TOKENS)


def _facts(n_params: int, quantization: str, file_bytes: int) -> ModelFacts:
    return ModelFacts("llama", "m", quantization, n_params, file_bytes, 1, 1, 1, 1, 1, (1,), 0, 0, 0, None)


@given(params, params, millibits)
def test_price_is_monotone_in_parameters(a: int, b: int, bits: int) -> None:
    lo, hi = sorted((a, b))
    assert price_of(lo, bits).per_token <= price_of(hi, bits).per_token


@given(params, millibits, millibits)
def test_price_is_monotone_in_bits_per_weight(n: int, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert price_of(n, lo).per_token <= price_of(n, hi).per_token


@given(params, millibits)
def test_price_is_a_positive_int_and_matches_the_published_formula(n: int, bits: int) -> None:
    p = price_of(n, bits)
    assert type(p.per_token) is int and p.per_token >= 1
    assert p.credits_per_mtok == p.per_token
    b = n / 1e9
    expected = 1000 * b * (bits / 4000) * max(1.0, b / 13) ** 0.2
    # The integer form rounds the fifth root down to 6 decimals and the result up: within 1 credit.
    assert abs(p.per_token - max(1.0, expected)) <= 1 + expected * 1e-6


def test_size_bonus_starts_above_13b_and_the_fifth_root_is_exact() -> None:
    assert price_of(13_000_000_000, 4000).per_token == 13_000
    assert pricing._bonus_micro(13_000_000_000 * 32) == 2_000_000  # 32 ** (1/5) == 2
    assert price_of(13_000_000_000 * 32, 4000).per_token == 13_000 * 32 * 2
    for x in (0, 1, 31, 32, 33, 10**30, 10**30 + 1, 2**200):
        r = pricing._iroot(x, 5)
        assert r**5 <= x < (r + 1) ** 5


@given(params, millibits, tokens, tokens, tokens)
def test_cost_is_monotone_in_tokens_and_served_never_exceeds_the_hold(
        n: int, bits: int, prompt: int, max_tokens: int, completion: int) -> None:
    p = price_of(n, bits)
    held = max_cost(p, prompt, max_tokens)
    served = served_cost(p, prompt, completion, max_tokens)
    assert 0 <= served <= held
    assert held == (prompt + max_tokens) * p.per_token
    if prompt < MAX_TOKENS:
        assert max_cost(p, prompt + 1, max_tokens) > held
    if completion < max_tokens:
        assert served_cost(p, prompt, completion + 1, max_tokens) > served


@given(st.integers(1, 10**9), st.integers(1, 10**9))
def test_ceiling_refusal_names_the_price_and_the_ceiling(price: int, ceiling: int) -> None:
    if price <= ceiling:
        check_ceiling(price, ceiling)
        return
    with pytest.raises(PriceAboveCeiling) as info:
        check_ceiling(Price(price, 1, 4000), ceiling, model="qwen2.5-72b")
    err = info.value
    assert f"{price:,}" in err.message and f"{ceiling:,}" in err.message
    assert "--max-price" in err.message and "HEARTH_MAX_PRICE" in err.message
    assert (err.price, err.ceiling, err.param) == (price, ceiling, "max_price")
    assert isinstance(err, InvalidRequest) and not isinstance(err, OutOfCapacity)


def test_no_ceiling_allows_any_price() -> None:
    check_ceiling(10**15, None)


@pytest.mark.parametrize("text,want", [("5000", 5000), (" 5_000 ", 5000), ("1,000,000", 1_000_000), (7, 7)])
def test_parse_ceiling_reads_whole_credits(text: object, want: int) -> None:
    assert parse_ceiling(text) == want


@given(st.one_of(st.text(max_size=30), st.floats(), st.booleans(), st.none(), st.integers(-(10**40), 10**40)))
def test_parse_ceiling_takes_a_positive_whole_number_or_raises_invalid_request(value: object) -> None:
    try:
        got = parse_ceiling(value)
    except InvalidRequest as exc:
        assert "--max-price" in exc.message and exc.param == "max_price"
    else:
        assert type(got) is int and got >= 1


@given(st.one_of(st.integers(-(10**40), 10**40), st.floats(), st.booleans(), st.text(max_size=10), st.none()),
       st.one_of(st.integers(-(10**40), 10**40), st.floats(), st.booleans(), st.none()))
def test_out_of_range_inputs_raise_invalid_request(n: object, bits: object) -> None:
    try:
        p = price_of(n, bits)  # type: ignore[arg-type]
    except InvalidRequest as exc:
        assert exc.param in {"n_params", "millibits"}
    else:
        assert p.per_token >= 1


@given(st.one_of(st.integers(-(10**40), 10**40), st.booleans(), st.floats(), st.none()))
def test_token_counts_from_requests_are_checked(count: object) -> None:
    p = price_of(7_000_000_000, 4850)
    try:
        cost = max_cost(p, 10, count)  # type: ignore[arg-type]
    except InvalidRequest as exc:
        assert exc.param == "max_tokens"
    else:
        assert cost >= 0


def test_quantisation_names_and_unknown_quantisations() -> None:
    assert price_of_quant(7_000_000_000, "q4_k_m") == price_of(7_000_000_000, 4850)
    assert price_of_quant(7_000_000_000, "Q8_0").per_token > price_of_quant(7_000_000_000, "Q4_K_M").per_token
    with pytest.raises(InvalidRequest, match="Q4_K_M"):
        price_of_quant(7_000_000_000, "IQ9_XXL")


def test_facts_use_the_table_and_fall_back_to_measured_bits() -> None:
    n = 7_615_616_512
    assert price_of_facts(_facts(n, "Q4_K_M", 4_683_073_184)) == price_of(n, 4850)
    # An unknown file type is priced by what its file measures: 4.2 bits per weight here.
    assert price_of_facts(_facts(n, "IQ4_XS", n * 42 // 80)).millibits == 4199
    with pytest.raises(InvalidRequest):
        price_of_facts(_facts(0, "Q4_K_M", 1))


def test_facts_of_the_embedded_model(smollm2_path: Path) -> None:
    """The real header of the embedded SmolLM2 GGUF prices within a few percent of its catalogue row."""
    facts = read_facts([smollm2_path])
    assert facts.quantization == "Q4_1"
    from_facts, from_entry = price_of_facts(facts).per_token, price_of_entry(CATALOGUE["smollm2-135m"]).per_token
    assert abs(from_facts - from_entry) <= from_entry // 20, (from_facts, from_entry)


def test_price_table_covers_the_catalogue_and_is_json() -> None:
    table = json.loads(json.dumps(price_table()))
    assert "credits per million tokens" in table["unit"] and "max(1, P / 13)" in table["formula"]
    rows = {r["model"]: r for r in table["data"]}
    assert set(rows) == set(CATALOGUE)
    for alias, row in rows.items():
        assert row["credits_per_million_tokens"] == price_of_entry(CATALOGUE[alias]).per_token
        assert row["bits_per_weight"] == BITS_PER_WEIGHT[CATALOGUE[alias].quant] / 1000
    prices = [r["credits_per_million_tokens"] for r in table["data"]]
    assert prices == sorted(prices)
    assert rows["qwen2.5-72b"]["credits_per_million_tokens"] > rows["qwen2.5-7b"]["credits_per_million_tokens"]
