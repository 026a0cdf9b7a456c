"""What a public worker offers: its stored models, named by the sha256 of their GGUF (exact weights).

A worker's Hello lists `ModelOffer`s; the coordinator prices each from its parameter count and
quantisation (hearth.public_swarm.pricing), so a model whose file type has no published price
cannot be offered. The digest is the store manifest's (the first file's sha256 for a split model).
`hearth contribute` then measures each offer's decode speed on the engine pool
(hearth.public_swarm.runner.measured) before it links, replacing UNMEASURED_TPS.
"""

from __future__ import annotations

from collections.abc import Sequence

from hearth.errors import InvalidRequest
from hearth.models.facts import read_facts
from hearth.models.pull import resolve
from hearth.models.store import ModelStore
from hearth.public_swarm.pricing import BITS_PER_WEIGHT
from hearth.public_swarm.protocol.messages import MAX_MODELS, ModelOffer
from hearth.settings import Settings

UNMEASURED_TPS = 1.0
"""Decode speed an offer carries until `hearth contribute` has measured it: a floor, not a boast."""
MIN_CTX = 64
"""The coordinator lists no model run with a smaller context."""


class NothingToOffer(InvalidRequest):
    """`hearth contribute` has no model it can offer: pull one whose quantisation has a price."""

    code = "nothing_to_offer"


def offer_of(store: ModelStore, name: str, n_ctx: int) -> ModelOffer:
    """The offer for stored (or embedded) model `name`, run with at most `n_ctx` tokens of context.
    Raises ModelNotFound, or NothingToOffer for a quantisation without a price."""
    stored, _ = resolve(store, name)
    manifest = store.get(stored)
    if manifest is None:  # removed between resolve and now
        raise NothingToOffer(f"Model {name!r} disappeared from the store.", param="model")
    facts = read_facts(store.part_paths(stored))
    quant = facts.quantization.upper()
    if quant not in BITS_PER_WEIGHT:
        raise NothingToOffer(f"Model {name!r} is {facts.quantization}, which has no price on the public swarm "
                             f"(priced: {', '.join(sorted(BITS_PER_WEIGHT))}).", param="model")
    ctx = min(n_ctx, facts.context_length) if facts.context_length > 0 else n_ctx
    if ctx < MIN_CTX:
        raise NothingToOffer(f"Model {name!r} would run with {ctx} tokens of context; at least {MIN_CTX}.",
                             param="model")
    return ModelOffer(digest=manifest.digest, name=stored[:128], params=facts.n_params, quant=quant,
                      n_ctx=ctx, decode_tps=UNMEASURED_TPS)


def model_offers(settings: Settings, names: Sequence[str] = ()) -> list[ModelOffer]:
    """Offers for `names`, or for every stored model that can be offered when none are named (the
    default model, imported if embedded, when the store is empty). Distinct digests, at most MAX_MODELS."""
    store = ModelStore(settings.models_dir)
    if names:
        offers = [offer_of(store, n, settings.n_ctx) for n in names]
    else:
        stored = [m.name for m in store.all()] or [settings.default_model]
        offers = []
        for name in stored:
            try:
                offers.append(offer_of(store, name, settings.n_ctx))
            except NothingToOffer:
                continue  # an unpriced file among several stored: offer the others
    unique = list({o.digest: o for o in offers}.values())
    if not unique:
        raise NothingToOffer("No stored model can be offered; `hearth pull` one with a priced quantisation "
                             "(Q4_K_M, Q8_0, F16, ...).", param="model")
    if len(unique) > MAX_MODELS:
        raise NothingToOffer(f"A worker offers at most {MAX_MODELS} models; name some with --model.", param="model")
    return unique
