"""The picture of the split: one bar of the model's layers, coloured by the node holding each, the
output head marked. `layer_cells` (which span draws each layer) and `bar_columns` (which layer
each column of a bar shows) are pure, so they are tested apart from Textual."""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widget import Widget

from hearth.node_api.status import LayerMap
from hearth.tui.widgets.palette import MUTED, esc, node_colour

HEAD = "◆"


@dataclass(frozen=True)
class Cell:
    layer: int
    span: int | None
    """Index of the span that holds it; None when no span names this layer (a map with a gap)."""


def layer_cells(layer_map: LayerMap) -> list[Cell]:
    """One cell per layer, in layer order. Where spans overlap the first one wins, so every layer
    is drawn exactly once whatever a server sent."""
    n = layer_map.n_layers
    owner: list[int | None] = [None] * n
    for index in reversed(range(len(layer_map.spans))):  # earlier spans overwrite later ones
        span = layer_map.spans[index]
        first, end = min(span.first, n), min(span.first + span.count, n)
        owner[first:end] = [index] * (end - first)
    return [Cell(layer, span) for layer, span in enumerate(owner)]


def bar_columns(n_layers: int, width: int) -> list[int]:
    """The layer each column of a `width`-wide bar shows: every layer when they fit (each as wide
    as the others), else an even sample; always in layer order."""
    if n_layers <= 0 or width <= 0:
        return []
    if n_layers <= width:
        per = width // n_layers
        return [layer for layer in range(n_layers) for _ in range(per)]
    return [column * n_layers // width for column in range(width)]


def span_label(layer_map: LayerMap, index: int) -> str:
    span = layer_map.spans[index]
    last = span.first + span.count - 1
    where = "this machine" if span.local else span.name
    return f"{where} {span.first}-{last}" if span.count else f"{where} (none)"


def draw(layer_map: LayerMap, width: int) -> Content:
    """Two lines: the bar with the head's mark after it, then the legend."""
    cells = layer_cells(layer_map)
    columns = bar_columns(len(cells), max(width - 2, 1))
    parts: list[tuple[str, str]] = []
    for layer in columns:
        span = cells[layer].span
        glyph, style = ("█", node_colour(span)) if span is not None else ("·", MUTED)
        if parts and parts[-1][1] == style:
            parts[-1] = (parts[-1][0] + glyph, style)
        else:
            parts.append((glyph, style))
    head = next((i for i, s in enumerate(layer_map.spans) if s.node_id == layer_map.output_node), None)
    if head is not None:
        parts.append((" " + HEAD, node_colour(head)))
    legend: list[tuple[str, str]] = []
    for index in range(len(layer_map.spans)):
        legend.append(("■ ", node_colour(index)))
        legend.append((span_label(layer_map, index) + "  ", ""))
    if head is not None:
        legend.append((f"{HEAD} output head", node_colour(head)))
    return Content.assemble(*parts, "\n", *legend)


class LayerMapView(Widget):
    """The bar of the loaded model; redrawn only when the map changes or the width does."""

    DEFAULT_CSS = "LayerMapView { height: 2; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self.layer_map: LayerMap | None = None

    def show(self, layer_map: LayerMap | None) -> None:
        if layer_map != self.layer_map:
            self.layer_map = layer_map
            self.refresh()

    def render(self) -> Content:
        if self.layer_map is None:
            return Content.from_markup(f"[{MUTED}]no model loaded (it loads on the first request)[/]")
        if self.layer_map.n_layers == 0:
            return Content.from_markup(f"[{MUTED}]{esc(self.layer_map.model)}: layers not known[/]")
        return draw(self.layer_map, self.size.width)
