"""The name this machine gives its peers when it pairs.

`hearth node --name den` is what the household sees, so pairing should say "den" too: the
node writes its name to $HEARTH_HOME/identity/name (next to the key it is the name of), and
`hearth pair` defaults to it, then to the host name. The host name travels as well
(PairingInfo.hostname), so `hearth unpair` on the other machine takes either.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from hearth.errors import InvalidRequest

NAME_RE = re.compile(r"[\w .'-]{1,63}")


def name_file(home: Path) -> Path:
    return home / "identity" / "name"


def check_name(label: str, option: str = "--name") -> str:
    """A name people will read on the other machines: 1 to 63 letters, digits, spaces or . ' - _"""
    if not NAME_RE.fullmatch(label):
        raise InvalidRequest(f"{option} takes 1 to 63 letters, digits, spaces or . ' - _")
    return label


def remember_node_name(home: Path, name: str) -> None:
    """Called by `hearth node` with its --name (or host name), replacing any earlier one."""
    path = name_file(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(name + "\n")
    os.replace(tmp, path)


def node_name(home: Path) -> str | None:
    """The name `hearth node` last ran under with this data folder, if it is a valid name."""
    try:
        text = name_file(home).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None
    return text if NAME_RE.fullmatch(text) else None


def hostname_label() -> str:
    """The host name as a pairing name: characters outside the allowed set become '-'."""
    label = re.sub(r"[^\w .'-]", "-", socket.gethostname())[:63].strip()
    return label or "hearth"


def default_label(home: Path) -> str:
    return node_name(home) or hostname_label()
