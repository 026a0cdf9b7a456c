"""The picture of the split: every layer drawn once, in order, whatever spans a server sent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hearth.node_api.status import LayerMap, LayerSpan
from hearth.tui.widgets.layer_map import HEAD, bar_columns, draw, layer_cells


@st.composite
def pooled_maps(draw_: st.DrawFn) -> LayerMap:
    """Well-formed maps: consecutive spans covering 0..n-1, as the server sends them."""
    counts = draw_(st.lists(st.integers(0, 40), min_size=1, max_size=6))
    spans, first = [], 0
    for i, count in enumerate(counts):
        spans.append(LayerSpan(node_id=f"n{i}", name=f"node{i}", first=first, count=count, local=i == 0))
        first += count
    return LayerMap(model="m", n_layers=first, spans=spans, output_node=f"n{len(counts) - 1}")


any_spans = st.lists(st.builds(LayerSpan, node_id=st.just("x"), name=st.just("x"), first=st.integers(0, 80),
                               count=st.integers(0, 80), local=st.booleans()), max_size=6)
any_maps = st.builds(LayerMap, model=st.just("m"), n_layers=st.integers(0, 120), spans=any_spans)


@given(pooled_maps())
def test_every_layer_is_drawn_once_by_its_span_and_the_spans_in_order(layer_map: LayerMap) -> None:
    cells = layer_cells(layer_map)
    assert [c.layer for c in cells] == list(range(layer_map.n_layers))
    owners = [c.span for c in cells]
    assert owners == sorted(owners, key=lambda s: -1 if s is None else s)
    for index, span in enumerate(layer_map.spans):
        assert owners.count(index) == span.count


@given(any_maps)
def test_any_map_a_server_sends_still_draws_each_layer_exactly_once(layer_map: LayerMap) -> None:
    cells = layer_cells(layer_map)
    assert [c.layer for c in cells] == list(range(layer_map.n_layers))
    for cell in cells:
        if cell.span is not None:
            span = layer_map.spans[cell.span]
            assert span.first <= cell.layer < span.first + span.count


@given(st.integers(0, 500), st.integers(0, 300))
def test_bar_columns_are_in_layer_order_and_show_every_layer_when_they_fit(n: int, width: int) -> None:
    columns = bar_columns(n, width)
    assert len(columns) <= width
    assert columns == sorted(columns)
    assert all(0 <= c < n for c in columns)
    if 0 < n <= width:
        assert set(columns) == set(range(n))
        assert len(columns) == width // n * n
    elif n > width:
        assert len(columns) == width


@given(pooled_maps(), st.integers(10, 200))
def test_the_drawing_marks_the_output_head_once_and_fits_its_width(layer_map: LayerMap, width: int) -> None:
    bar, legend = draw(layer_map, width).plain.split("\n")
    assert len(bar) <= width
    assert bar.count(HEAD) == 1 and legend.count(HEAD) == 1
