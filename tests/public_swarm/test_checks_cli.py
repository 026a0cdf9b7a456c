"""`hearth coordinator --reference NODE_ID` and HEARTH_SPOT_CHECKS (issue 11): a malformed one is one
clear line and exit 2 before anything listens or writes; well formed, the references are trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.public_swarm.coordinator.serve import checks_from_env
from tests.cli.inprocess import hearth_here


@pytest.mark.parametrize(("args", "env", "says"), [
    (["--reference", "NOT-A-NODE"], {}, "--reference must be a node id"),
    (["--reference", "aaaaaaaaaaaaaaab", "--reference", "x"], {}, "--reference must be a node id"),
    ([], {"HEARTH_SPOT_CHECKS": "maybe"}, "HEARTH_SPOT_CHECKS must be on or off"),
])
def test_bad_references_and_switches_are_one_clear_line(tmp_path: Path, args: list[str], env: dict[str, str],
                                                        says: str) -> None:
    r = hearth_here(tmp_path, "coordinator", "--bind", "127.0.0.1", *args, **env)
    assert r.code == 2, r
    assert says in r.stderr.replace("\n", " "), r.stderr
    assert not (tmp_path / "coordinator.db").exists()


@pytest.mark.parametrize(("value", "on"), [("", True), ("on", True), ("1", True), ("off", False), ("0", False)])
def test_spot_checks_are_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("HEARTH_SPOT_CHECKS", value)
    assert checks_from_env() is on
