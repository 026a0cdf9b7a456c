from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.models.facts import ModelFacts
from hearth.orchestrator.planner import DoesNotFit, NodeCapacity, plan

GB = 10**9


def facts(n_layers: int = 80, layer: int = GB // 2, embedding: int = GB, output: int = GB, kv_token: int = 320_000) -> ModelFacts:
    return ModelFacts("llama", "test", "Q4_K_M", 70 * 10**9, n_layers * layer + embedding + output, n_layers,
                      8192, 64, 8, 32768, (layer,) * n_layers, embedding, output, kv_token, None)


LOCAL = NodeCapacity("aaaa", "here", "CPU", 64 * GB, local=True)


def test_fits_locally_stays_local() -> None:
    p = plan(facts(), "m", [LOCAL, NodeCapacity("bbbb", "den", "CPU", 64 * GB)], n_ctx=4096)
    # 48 GB here would not do: 10 % headroom leaves 43.2 GB, less than the 43.3 GB needed.
    tight = plan(facts(), "m", [NodeCapacity("aaaa", "here", "CPU", 48 * GB, local=True),
                                NodeCapacity("bbbb", "den", "CPU", 64 * GB)], n_ctx=4096)
    assert tight.pooled and tight.remote[0].layers == 1
    assert not p.pooled
    assert [(a.node.name, a.layers) for a in p.assignments] == [("here", 80)]
    assert "no network hop" in p.assignments[0].reason


def test_needs_two_nodes_uses_the_fewest_and_roomiest() -> None:
    small_local = NodeCapacity("aaaa", "here", "CPU", 20 * GB, local=True)
    nodes = [small_local, NodeCapacity("cccc", "attic", "CPU", 12 * GB), NodeCapacity("bbbb", "den", "CPU", 40 * GB)]
    p = plan(facts(), "m", nodes, n_ctx=4096)
    assert [a.node.name for a in p.assignments] == ["den", "here"]  # attic not needed
    assert sum(a.layers for a in p.assignments) == 80
    for a in p.assignments:
        assert a.bytes <= a.node.free_bytes * 0.9
    assert p.tensor_split() == tuple(float(a.layers) for a in p.assignments)


def test_faster_devices_are_filled_first() -> None:
    nodes = [NodeCapacity("aaaa", "here", "CPU", 10 * GB, local=True),
             NodeCapacity("bbbb", "slow", "CPU", 60 * GB), NodeCapacity("cccc", "gpu", "CUDA0", 30 * GB, speed=5.0)]
    p = plan(facts(), "m", nodes, n_ctx=4096)
    by = {a.node.name: a for a in p.assignments}
    assert by["gpu"].layers >= by["slow"].layers and "5x speed" in by["gpu"].reason


def test_does_not_fit_says_so_with_numbers() -> None:
    with pytest.raises(DoesNotFit, match=r"needs 43\.3 GB .* has 21\.6 GB free") as e:
        plan(facts(), "qwen2.5-72b", [NodeCapacity("aaaa", "here", "CPU", 24 * GB, local=True)], n_ctx=4096)
    assert e.value.needed > e.value.available


def test_pool_spreads_evenly_across_every_node() -> None:
    nodes = [LOCAL, NodeCapacity("bbbb", "b", "CPU", 48 * GB), NodeCapacity("cccc", "c", "CPU", 48 * GB)]
    p = plan(facts(n_layers=30, layer=10**6, embedding=10**6, output=10**6, kv_token=100), "m", nodes,
             n_ctx=2048, force_pool=True)
    assert sorted(a.layers for a in p.assignments) == [10, 10, 10]
    assert p.assignments[-1].node.local  # the engine lists this machine last


def test_pool_without_peers_says_so() -> None:
    p = plan(facts(n_layers=4, layer=10, embedding=10, output=10, kv_token=1), "m", [LOCAL], n_ctx=64, force_pool=True)
    assert not p.pooled and "no remote node" in p.notes[0]


@given(
    n_layers=st.integers(1, 120),
    layer=st.integers(1, 2 * GB),
    frees=st.lists(st.integers(0, 200 * GB), min_size=1, max_size=6),
    pool=st.booleans(),
)
def test_any_plan_places_every_layer_within_capacity(n_layers: int, layer: int, frees: list[int], pool: bool) -> None:
    f = facts(n_layers=n_layers, layer=layer, embedding=layer, output=layer, kv_token=1000)
    nodes = [NodeCapacity(f"n{i}", f"n{i}", "CPU", free, local=(i == 0)) for i, free in enumerate(frees)]
    try:
        p = plan(f, "m", nodes, n_ctx=1024, force_pool=pool)
    except DoesNotFit as e:
        assert e.needed > 0
        return
    assert sum(a.layers for a in p.assignments) == n_layers
    for a in p.assignments:
        assert a.bytes <= a.node.free_bytes


@pytest.mark.parametrize("text, size", [("12G", 12 * 10**9), ("12 GB", 12 * 10**9), ("1.5GiB", int(1.5 * 2**30)),
                                        ("512m", 512 * 10**6), ("4096", 4096), ("2T", 2 * 10**12)])
def test_parse_size(text: str, size: int) -> None:
    from hearth.units import parse_size

    assert parse_size(text) == size


@given(st.text(max_size=12))
def test_parse_size_accepts_sizes_or_raises_invalid_request(text: str) -> None:
    from hearth.errors import InvalidRequest
    from hearth.units import parse_size

    try:
        assert parse_size(text) >= 0
    except InvalidRequest:
        pass


def test_each_parallel_slot_counts_its_own_kv_cache() -> None:
    one = plan(facts(), "m", [LOCAL], n_ctx=4096)
    four = plan(facts(), "m", [LOCAL], n_ctx=4096, parallel=4)
    kv = facts().kv_bytes(4096)
    assert four.needed_bytes - one.needed_bytes == pytest.approx(3 * kv, abs=facts().n_layers * 4)
    assert four.parallel == 4 and four.to_json()["parallel"] == 4 and one.parallel == 1
    # Four slots of a 4096-token window no longer fit here: the plan says so, and names the knob.
    with pytest.raises(DoesNotFit, match="for each of 24 parallel requests.*HEARTH_PARALLEL"):
        plan(facts(), "m", [LOCAL], n_ctx=4096, parallel=24)


def test_default_slots_give_way_to_the_split() -> None:
    """--pool with a node that holds an even split for one slot but not for four: the default slots
    drop until it does (never everything here); without --pool, until the circle holds it."""
    from hearth.orchestrator.planner import plan_slots

    small = NodeCapacity("bbbb", "bee", "CPU", 24 * GB)  # 21.6 GB usable: half the layers with 2 slots of KV, not 4
    forced = plan_slots(facts(), "m", [LOCAL, small], n_ctx=4096, most=4, force_pool=True)
    assert forced.pooled and 1 <= forced.parallel < 4
    assert not any("even split does not fit" in n for n in forced.notes)
    with_four = plan(facts(), "m", [LOCAL, small], n_ctx=4096, parallel=4, force_pool=True)
    assert not with_four.pooled  # what the default used to do: all here, so --pool found "no node"
    tight = NodeCapacity("aaaa", "here", "CPU", 40 * GB, local=True)
    fits = plan_slots(facts(), "m", [tight, small], n_ctx=4096, most=4)
    assert fits.pooled and fits.parallel >= 1
    with pytest.raises(DoesNotFit):
        plan(facts(), "m", [tight, small], n_ctx=4096, parallel=64)
