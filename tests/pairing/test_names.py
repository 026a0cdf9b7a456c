"""The name a machine pairs under: `hearth node`'s, else the host name."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hearth.pairing.names import default_label, hostname_label, name_file, node_name, remember_node_name


def test_the_node_name_is_remembered_for_pairing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "box-17")
    assert node_name(tmp_path) is None and default_label(tmp_path) == "box-17"
    remember_node_name(tmp_path, "den")
    assert node_name(tmp_path) == "den" and default_label(tmp_path) == "den"
    remember_node_name(tmp_path, "living room")
    assert default_label(tmp_path) == "living room"
    name_file(tmp_path).write_text("bad/name\n")  # damaged by hand: ignored, not trusted
    assert default_label(tmp_path) == "box-17"


def test_a_host_name_becomes_a_valid_pairing_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "box/17:" + "x" * 80)
    assert hostname_label() == "box-17-" + "x" * 56
    monkeypatch.setattr(socket, "gethostname", lambda: "")
    assert hostname_label() == "hearth"
