"""Short single-use pairing codes like `7-crossbow-anvil`: a nameplate number that routes the
guest to the waiting host, and two words; the whole code is the SPAKE2 password."""

from __future__ import annotations

import re
import secrets

from hearth.errors import InvalidRequest

# 256 short, distinct, easy-to-say words: two of them give 16 bits, enough against the one
# guess an attacker gets before the code is burned.
WORDS = tuple("""
acorn adder agent alarm alley amber ample anchor angle anvil apple apron arbor arch arena argue
arrow aspen atlas attic audio autumn avenue axle badge bagel baker bamboo banjo barley barn basil
basin beach beacon beaver bell bench berry bison blade blanket blaze bloom bluff board bonfire
boot bottle boulder bramble branch brass bread brick bridge brook broom bucket buckle bugle bundle
cabin cactus camel candle canoe canyon carpet carrot castle cedar cellar chalk cherry chess
chimney cider cinder circle citrus clover cobalt comet copper coral cotton cradle crane crayon
creek cricket crossbow crown crystal cup daisy dagger delta desert diesel dinghy dolphin domino
donkey dragon drum dune eagle easel echo elbow ember emerald engine falcon feather fern ferry
fiddle finch flint flute forest fossil fox galaxy garden garlic geyser ginger glacier goblet
granite grape gravel guitar hammer harbor harp hazel heron hickory honey hornet husky igloo
island ivory jacket jaguar jasmine jelly jigsaw juniper kayak kettle kiwi ladder lagoon lantern
larch lemon lilac linen lizard lobster locket lotus magnet maple marble meadow melon mint mirror
mitten monsoon moose mosaic moss mustard needle nectar nickel nutmeg oasis oak olive onyx orbit
orchid otter oyster paddle panther parrot pebble pepper piano pine planet plum pollen pond poppy
puffin pumpkin quartz quill rabbit radish raven reef ribbon river robin rocket saddle saffron
salmon sandal sapphire scarf shovel silver sparrow spruce squash storm summit swan tangle thistle
thunder tiger timber tulip tundra turnip velvet violin walnut willow wizard yarrow yeti zebra
zephyr zinnia acre banner cobra dove glove hatch
""".split())
assert len(WORDS) == len(set(WORDS)) == 256, len(WORDS)

_CODE_RE = re.compile(r"^\s*(\d{1,4})-([a-z]+)-([a-z]+)\s*$")


MAX_NAMEPLATE = 9999


def make_code(nameplate: int) -> str:
    if not 0 < nameplate <= MAX_NAMEPLATE:
        raise ValueError("nameplate must be 1 to 9999")
    return f"{nameplate}-{secrets.choice(WORDS)}-{secrets.choice(WORDS)}"


def parse_code(text: str) -> tuple[int, str]:
    """(nameplate, normalised code); InvalidRequest with what a person should type otherwise."""
    m = _CODE_RE.match(text.lower())
    if not m or m.group(2) not in WORDS or m.group(3) not in WORDS or int(m.group(1)) == 0:
        raise InvalidRequest(f"{text[:40]!r} is not a pairing code; it looks like 7-crossbow-anvil.")
    return int(m.group(1)), f"{int(m.group(1))}-{m.group(2)}-{m.group(3)}"
