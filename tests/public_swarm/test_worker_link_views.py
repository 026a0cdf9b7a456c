"""How the coordinator lists a linked worker's models (no sockets): priced ones only."""

from __future__ import annotations

from hearth.public_swarm.coordinator.links import model_view
from hearth.public_swarm.pricing import price_of_quant
from hearth.public_swarm.protocol.messages import ModelOffer


def offer(quant: str, n_ctx: int = 2048) -> ModelOffer:
    return ModelOffer(digest="a" * 64, name="m", params=135_000_000, quant=quant, n_ctx=n_ctx, decode_tps=3.5)


def test_a_priced_offer_is_listed_with_its_price() -> None:
    view = model_view(offer("q8_0"))
    assert view is not None
    assert (view.quantization, view.n_params, view.n_ctx) == ("Q8_0", 135_000_000, 2048)
    assert view.credits_per_million_tokens == price_of_quant(135_000_000, "Q8_0").credits_per_mtok


def test_an_offer_the_coordinator_cannot_price_or_list_is_left_out() -> None:
    assert model_view(offer("IQ2_XXS")) is None
    assert model_view(offer("Q4_K_M", n_ctx=16)) is None  # below the listing's smallest context
