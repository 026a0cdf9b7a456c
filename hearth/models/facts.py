"""Model facts read from GGUF headers: what the planner and `hearth models show` need."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hearth.errors import InvalidRequest
from hearth.models.gguf_header import MAX_U32, Value, read_header
from hearth.models.store import ModelStore

_BLOCK_RE = re.compile(r"^blk\.(\d{1,9})\.")
KV_BYTES_PER_ELEMENT = 2  # llama.cpp's default KV cache type is f16

# general.file_type values (llama.cpp's llama_ftype) for the common quantisations.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}


@dataclass(frozen=True)
class ModelFacts:
    architecture: str
    name: str
    quantization: str
    n_params: int
    file_bytes: int
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    context_length: int
    layer_bytes: tuple[int, ...]
    embedding_bytes: int
    output_bytes: int
    kv_bytes_per_token: int
    chat_template: str | None

    @property
    def bytes_per_layer(self) -> int:
        """The largest layer: a safe figure for placing layers."""
        return max(self.layer_bytes, default=0)

    def kv_bytes(self, n_ctx: int) -> int:
        return self.kv_bytes_per_token * n_ctx

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["bytes_per_layer"] = self.bytes_per_layer
        d["layer_bytes"] = list(self.layer_bytes)
        return d


def cached_facts(store: ModelStore, name: str) -> ModelFacts:
    """Facts for a stored model, read once and kept next to the blobs."""
    manifest = store.get(name)
    if manifest is None:
        raise InvalidRequest(f"Model {name!r} is not in the store.")
    path = store.root / "facts" / f"{manifest.digest}.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            data["layer_bytes"] = tuple(data["layer_bytes"])
            data.pop("bytes_per_layer", None)
            return ModelFacts(**data)
        except (ValueError, TypeError, KeyError):
            path.unlink(missing_ok=True)  # written by another version: read the GGUF again
    facts = read_facts(store.part_paths(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts.to_json()))
    tmp.replace(path)
    return facts


def _number(fields: dict[str, Value], key: str, default: int, path: Path) -> int:
    """A count from the header as llama.cpp reads it (an unsigned 32-bit value); a per-layer
    array gives its largest item, the safe figure."""
    value = fields.get(key)
    if value is None:
        return default
    if isinstance(value, tuple) and value:
        value = max(value)
    if type(value) is not int or not 0 <= value <= MAX_U32:
        raise InvalidRequest(f"{path} is not a readable GGUF file: {key!r} is {value!r:.60}, not a count.")
    return value


def _text(fields: dict[str, Value], key: str) -> str | None:
    value = fields.get(key)
    return value if isinstance(value, str) else None


def read_facts(paths: list[Path]) -> ModelFacts:
    """Facts from a GGUF file (all parts, first part first, for a split model).

    Every count is bounded by what the files hold (see gguf_header); a damaged or crafted file
    gives one InvalidRequest, in time and memory proportional to its header at most."""
    if not paths:
        raise InvalidRequest("No GGUF file given.")
    headers = [read_header(p) for p in paths]
    head = headers[0].fields
    arch = _text(head, "general.architecture") or "unknown"
    n_tensors = sum(len(h.tensors) for h in headers)
    n_layers = _number(head, f"{arch}.block_count", 0, paths[0])
    if n_layers > n_tensors:  # every layer has at least one tensor
        raise InvalidRequest(f"{paths[0]} is not a readable GGUF file: it claims {n_layers} layers but holds "
                             f"{n_tensors} tensors.")
    n_embd = _number(head, f"{arch}.embedding_length", 0, paths[0])
    n_head = _number(head, f"{arch}.attention.head_count", 0, paths[0])
    n_head_kv = _number(head, f"{arch}.attention.head_count_kv", n_head, paths[0]) or n_head
    head_dim = n_embd // n_head if n_head else 0
    k_len = _number(head, f"{arch}.attention.key_length", head_dim, paths[0]) or head_dim
    v_len = _number(head, f"{arch}.attention.value_length", head_dim, paths[0]) or head_dim

    layer_bytes = [0] * n_layers
    embedding = output = n_params = 0
    for h in headers:
        for t in h.tensors:
            n_params += t.n_elements
            m = _BLOCK_RE.match(t.name)
            if m and int(m.group(1)) < n_layers:
                layer_bytes[int(m.group(1))] += t.n_bytes
            elif t.name.startswith("token_embd"):
                embedding += t.n_bytes
            elif t.name.startswith("output"):
                output += t.n_bytes
    file_type = head.get("general.file_type")
    return ModelFacts(
        architecture=arch,
        name=_text(head, "general.name") or paths[0].name,
        quantization=(FILE_TYPES.get(file_type, str(file_type)) if type(file_type) is int else "unknown"),
        n_params=n_params,
        file_bytes=sum(h.file_size for h in headers),
        n_layers=n_layers,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        context_length=_number(head, f"{arch}.context_length", 0, paths[0]),
        layer_bytes=tuple(layer_bytes),
        embedding_bytes=embedding,
        output_bytes=output,
        kv_bytes_per_token=KV_BYTES_PER_ELEMENT * n_layers * n_head_kv * (k_len + v_len),
        chat_template=_text(head, "tokenizer.chat_template"),
    )
