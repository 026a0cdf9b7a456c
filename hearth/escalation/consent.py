"""Consent that a prompt may leave the circle for strangers' machines: asked once, remembered.

The public radius is never silent. A person answers once per coordinator (hearth remembers a yes
in HEARTH_HOME, `public-consent.json`); scripts and services consent with `--yes` or
HEARTH_PUBLIC_OK=1 instead. A no is not remembered: the next request asks again (or is refused
where nobody can be asked, such as `hearth serve`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from hearth.errors import HearthError

FILE = "public-consent.json"
MAX_FILE = 64 * 1024
HOW = ("pass --yes, set HEARTH_PUBLIC_OK=1, or answer yes once to `hearth run --radius public` in a "
       "terminal (remembered in HEARTH_HOME)")

Ask = Callable[[str], bool]
"""Asks the person a yes/no question; True means yes."""


class PublicNotConsented(HearthError):
    """The request would leave the circle for the public swarm, and nobody has agreed to that."""

    http_status = 403
    error_type = "permission_error"
    code = "public_not_consented"
    exit_code = 2


def question(coordinator: str) -> str:
    return (f"Nothing in your circle can serve this request. The coordinator and a stranger's machine see the "
            f"prompt; the coordinator keeps it only while the job runs. Send the prompt to the public swarm at "
            f"{coordinator}, to be run on a stranger's machine and paid in credits?")


def remembered(home: Path) -> set[str]:
    """Coordinators this person has agreed to; a missing or unreadable file is no consent."""
    path = home / FILE
    try:
        with path.open("rb") as f:
            raw = json.loads(f.read(MAX_FILE))
    except (OSError, ValueError):
        return set()
    agreed = raw.get("coordinators") if isinstance(raw, dict) else None
    return {k for k in agreed if isinstance(k, str)} if isinstance(agreed, dict) else set()


def remember(home: Path, coordinator: str, now: Callable[[], float] = time.time) -> None:
    """Add `coordinator` to the agreed ones (written whole, then renamed: never half a file)."""
    path = home / FILE
    try:
        with path.open("rb") as f:
            raw = json.loads(f.read(MAX_FILE))
    except (OSError, ValueError):
        raw = {}
    agreed = raw.get("coordinators") if isinstance(raw, dict) else None
    agreed = dict(agreed) if isinstance(agreed, dict) else {}
    agreed[coordinator] = int(now())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"coordinators": agreed}, indent=1), encoding="utf-8")
    os.replace(tmp, path)


class Consent:
    """Whether a request may go to `coordinator`: `given` (--yes or the setting), a remembered
    yes, or the person's answer to `ask` (None where nobody can be asked)."""

    def __init__(self, home: Path, coordinator: str, *, given: bool = False, ask: Ask | None = None) -> None:
        self.home, self.coordinator, self.given, self.ask = home, coordinator, given, ask

    @property
    def settled(self) -> bool:
        return self.given or self.coordinator in remembered(self.home)

    def check(self) -> None:
        """Return when the request may go; otherwise PublicNotConsented saying how to agree."""
        if self.settled:
            return
        if self.ask is not None and self.ask(question(self.coordinator)):
            remember(self.home, self.coordinator)
            return
        raise PublicNotConsented(f"The request needs the public swarm at {self.coordinator}, and sending the "
                                 f"prompt there was not agreed to: {HOW}.")
