"""How far a model may reach: one vocabulary for flags, JSON, `hearth peers` and the docs.

    machine  ⊂  household  ⊂  trusted  ⊂  public
    (this      (+ nodes on    (+ peers paired   (+ strangers' machines,
    machine)   the LAN)       by code)          credit-priced)

A request's radius is the widest circle it may use; a peer's radius is the narrowest circle it
belongs to (a LAN node is `household`, a paired peer `trusted`).
"""

from __future__ import annotations

from enum import StrEnum

from hearth.errors import InvalidRequest


class Radius(StrEnum):
    MACHINE = "machine"
    HOUSEHOLD = "household"
    TRUSTED = "trusted"
    PUBLIC = "public"


DEPRECATED = {"local": Radius.MACHINE}
"""Old spellings still accepted by --radius: 'local' meant this machine (it reads like 'the LAN')."""

AVAILABLE = (Radius.MACHINE, Radius.HOUSEHOLD, Radius.TRUSTED, Radius.PUBLIC)
"""What a request may ask for. PUBLIC tries the circle first and escalates to the public swarm's
coordinator only when the circle cannot serve (hearth.escalation), with the person's consent."""


def parse_radius(text: str, option: str = "--radius") -> Radius:
    """A radius from a flag or a setting: its name, or a deprecated spelling (see `deprecation`)."""
    value = text.strip().lower()
    radius = DEPRECATED.get(value)
    if radius is None:
        try:
            radius = Radius(value)
        except ValueError:
            radius = None
    if radius is None or radius not in AVAILABLE:
        names = ", ".join(f"'{r}'" for r in AVAILABLE)
        raise InvalidRequest(f"{option} {text!r}: choose {names}.")
    return radius


ADMIT_DEPRECATED = {"paired": Radius.TRUSTED}
"""`hearth node --admit paired` was the old spelling of `--admit trusted`."""


def parse_admit(text: str) -> Radius:
    """Who may lease from a node: HOUSEHOLD (anyone on this LAN) or TRUSTED (paired peers only)."""
    value = text.strip().lower()
    radius = ADMIT_DEPRECATED.get(value) or (Radius(value) if value in ("household", "trusted") else None)
    if radius is None:
        raise InvalidRequest(f"--admit {text!r}: choose 'household' or 'trusted' (paired peers only).")
    return radius


def deprecation(text: str, option: str = "--radius") -> str | None:
    """The note to show when `text` is an old spelling, else None."""
    old = DEPRECATED if option == "--radius" else ADMIT_DEPRECATED
    new = old.get(text.strip().lower())
    return None if new is None else f"{option} {text} is deprecated; write {option} {new.value}."
