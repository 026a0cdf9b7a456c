"""The pure parts of the public radius: the radius and its settings, the consent store (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.errors import InvalidRequest
from hearth.escalation.consent import FILE, Consent, PublicNotConsented, remember, remembered
from hearth.escalation.pool import NoCoordinatorSet, coordinator_of, public_model_name
from hearth.models.store import ModelStore
from hearth.public_swarm.pricing import parse_ceiling
from hearth.radius import AVAILABLE, Radius, parse_radius
from hearth.settings import Settings

URL = "http://127.0.0.1:11440"


def test_public_is_a_radius_people_can_ask_for() -> None:
    assert Radius.PUBLIC in AVAILABLE
    assert parse_radius(" Public ") is Radius.PUBLIC
    with pytest.raises(InvalidRequest, match="'public'"):
        parse_radius("everyone")


@given(st.one_of(st.text(max_size=30), st.integers(min_value=-5, max_value=10**19)))
def test_the_max_price_setting_reads_a_ceiling_as_parse_ceiling_does(value: str | int) -> None:
    try:
        expected: int | None = parse_ceiling(value)
    except InvalidRequest:
        expected = None
    if isinstance(value, str) and not value.strip():
        assert Settings(max_price=value).max_price is None  # an empty variable: no ceiling
        return
    try:
        got = Settings(max_price=value).max_price
    except ValueError:
        got = None
    assert got == expected


def test_settings_for_the_public_radius_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    monkeypatch.setenv("HEARTH_MAX_PRICE", "5_000")
    monkeypatch.setenv("HEARTH_PUBLIC_OK", "1")
    s = Settings()
    assert s.max_price == 5000 and s.public_ok is True
    assert Settings(home=tmp_path).max_price == 5000


def test_no_coordinator_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(NoCoordinatorSet, match="HEARTH_COORDINATOR"):
        coordinator_of(Settings(home=tmp_path, coordinator=None))
    assert coordinator_of(Settings(home=tmp_path, coordinator=URL + "/")) == URL


def test_consent_asks_once_and_remembers_a_yes(tmp_path: Path) -> None:
    asked: list[str] = []

    def yes(question: str) -> bool:
        asked.append(question)
        return True

    Consent(tmp_path, URL, ask=yes).check()
    Consent(tmp_path, URL, ask=yes).check()
    assert len(asked) == 1 and URL in asked[0] and "stranger" in asked[0]
    assert "The coordinator and a stranger's machine see the prompt" in asked[0]  # issue 11: say who sees it
    assert "keeps it only while the job runs" in asked[0]
    assert remembered(tmp_path) == {URL}
    with pytest.raises(PublicNotConsented):  # another coordinator is another question
        Consent(tmp_path, "http://127.0.0.1:1", ask=None).check()


def test_a_no_is_not_remembered_and_the_refusal_says_how_to_agree(tmp_path: Path) -> None:
    with pytest.raises(PublicNotConsented, match="--yes.*HEARTH_PUBLIC_OK") as caught:
        Consent(tmp_path, URL, ask=lambda _: False).check()
    assert caught.value.http_status == 403 and caught.value.exit_code == 2
    assert not (tmp_path / FILE).exists()
    Consent(tmp_path, URL, given=True, ask=None).check()  # --yes / HEARTH_PUBLIC_OK: no question
    assert remembered(tmp_path) == set()  # and nothing written for the person


@pytest.mark.parametrize("content", [b"", b"{", b"[1]", b'{"coordinators": [1]}', b'{"coordinators": {"1": 2}}',
                                     b"\xff" * 10, b" " * 70_000])
def test_a_damaged_consent_file_is_no_consent_and_is_rewritten_whole(tmp_path: Path, content: bytes) -> None:
    (tmp_path / FILE).write_bytes(content)
    assert URL not in remembered(tmp_path)
    remember(tmp_path, URL, now=lambda: 7.0)
    assert URL in remembered(tmp_path)
    assert json.loads((tmp_path / FILE).read_text())["coordinators"][URL] == 7


def test_the_swarm_is_asked_for_exact_weights_when_this_machine_has_them(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    assert public_model_name(store, "qwen2.5-7b") == "qwen2.5-7b"
    assert public_model_name(store, "../bad name") == "../bad name"
