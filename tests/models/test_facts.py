from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.errors import InvalidRequest
from hearth.models.facts import read_facts
from hearth.models.store import ModelStore


def test_smollm2_facts_from_the_real_gguf(smollm2_path: Path) -> None:
    f = read_facts([smollm2_path])
    assert (f.architecture, f.n_layers, f.n_embd, f.n_head, f.n_head_kv) == ("llama", 30, 576, 9, 3)
    assert f.quantization == "Q4_1"
    assert f.context_length == 8192
    # K and V, f16, 3 kv heads of 64 dimensions, 30 layers
    assert f.kv_bytes_per_token == 2 * 30 * 3 * (64 + 64)
    assert len(f.layer_bytes) == 30 and len(set(f.layer_bytes)) == 1
    # every byte of tensor data is in a layer, the embedding or the output
    assert sum(f.layer_bytes) + f.embedding_bytes + f.output_bytes < f.file_bytes
    assert sum(f.layer_bytes) + f.embedding_bytes + f.output_bytes > 0.95 * f.file_bytes
    assert f.chat_template and "im_start" in f.chat_template


def test_gemma3_facts(models_home: Path) -> None:
    store = ModelStore(models_home / "models")
    f = read_facts(store.part_paths("gemma3-270m"))
    assert f.architecture == "gemma3"
    assert f.n_layers == 18
    assert f.chat_template is None  # this conversion carries none; the engine supplies Gemma's


def _write_part(path: Path, layers: range, n_layers: int, with_embedding: bool) -> None:
    w = GGUFWriter(path, "llama")
    w.add_block_count(n_layers)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(512)
    if with_embedding:
        w.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float32))
    for i in layers:
        w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((64, 64), dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_up.weight", np.zeros((128, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_split_gguf_facts_add_up_every_part(tmp_path: Path) -> None:
    p1, p2 = tmp_path / "m-00001-of-00002.gguf", tmp_path / "m-00002-of-00002.gguf"
    _write_part(p1, range(0, 2), 4, with_embedding=True)
    _write_part(p2, range(2, 4), 4, with_embedding=False)
    f = read_facts([p1, p2])
    layer = 64 * 64 * 4 + 128 * 64 * 2
    assert f.layer_bytes == (layer,) * 4
    assert f.embedding_bytes == 100 * 64 * 4
    assert f.kv_bytes_per_token == 2 * 4 * 2 * (16 + 16)
    assert f.file_bytes == p1.stat().st_size + p2.stat().st_size


def test_not_a_gguf_is_refused_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(InvalidRequest, match="not a readable GGUF"):
        read_facts([bad])


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_damaged_headers_raise_only_invalid_request(tmp_path: Path, tail: bytes) -> None:
    bad = tmp_path / "damaged.gguf"
    bad.write_bytes(b"GGUF" + tail)
    try:
        read_facts([bad])
    except InvalidRequest:
        pass
