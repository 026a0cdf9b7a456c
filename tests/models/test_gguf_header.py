"""The bounded GGUF header reader: agrees with gguf's reader on real files, and on damaged or
crafted ones gives one InvalidRequest in bounded time and memory."""

from __future__ import annotations

import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.errors import InvalidRequest
from hearth.models.facts import ModelFacts, read_facts
from hearth.models.gguf_header import Skipped, parse_header, read_header

SECONDS = 2.0
MEMORY = 32 << 20
INTERESTING = [0, 1, 2, 3, 4, 5, 8, 9, 12, 255, 1 << 16, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32,
               60_000_000, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
U64 = st.one_of(st.sampled_from(INTERESTING), st.integers(0, (1 << 64) - 1))


def bounded(fn: Callable[[], ModelFacts]) -> ModelFacts | InvalidRequest:
    """Run fn; it must return or raise InvalidRequest, within SECONDS and MEMORY."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        result: ModelFacts | InvalidRequest = fn()
    except InvalidRequest as exc:
        result = exc
    finally:
        took = time.monotonic() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert took < SECONDS, f"took {took:.1f} s"
    assert peak < MEMORY, f"peak {peak >> 20} MiB"
    return result


def write_model(path: Path, n_layers: int = 2, block_count: int | None = None) -> None:
    w = GGUFWriter(path, "llama")
    w.add_name("tiny")
    w.add_block_count(n_layers if block_count is None else block_count)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(512)
    w.add_file_type(1)
    w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    w.add_token_list([f"tok{i}" for i in range(40)])
    w.add_token_scores([float(i) for i in range(40)])
    w.add_array("llama.attention.sliding_pattern", [1, 0] * n_layers)
    if n_layers:
        w.add_tensor("token_embd.weight", np.zeros((40, 64), dtype=np.float32))
    for i in range(n_layers):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="module")
def valid(folder: Path) -> Path:
    path = folder / "valid.gguf"
    write_model(path)
    return path


def test_header_agrees_with_ggufs_reader(valid: Path) -> None:
    path = valid
    ours = read_header(path)
    ref = GGUFReader(path)
    assert [(t.name, t.n_elements, t.n_bytes, t.offset) for t in ours.tensors] == \
           [(t.name, int(t.n_elements), int(t.n_bytes), int(t.data_offset) - ref.data_offset) for t in ref.tensors]
    assert ours.data_offset == ref.data_offset
    assert set(ours.fields) == set(ref.fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    assert ours.fields["llama.block_count"] == 2 and ours.fields["general.name"] == "tiny"
    assert ours.fields["tokenizer.ggml.tokens"] == Skipped("array of strings", 40)
    assert ours.fields["llama.attention.sliding_pattern"] == (1, 0, 1, 0)


def test_real_model_header_is_quick(smollm2_path: Path) -> None:
    """The vocabulary (49152 strings) is stepped over, not parsed: milliseconds where gguf's own
    reader takes seconds (43 s on a loaded 2-core machine)."""
    t0 = time.monotonic()
    ours = read_header(smollm2_path)
    took = time.monotonic() - t0
    assert len(ours.tensors) == 30 * 9 + 2  # 9 per layer, the embedding and the output norm
    assert ours.fields["tokenizer.ggml.tokens"] == Skipped("array of strings", 49152)
    data = sum(t.n_bytes for t in ours.tensors)
    assert 0.95 * (ours.file_size - ours.data_offset) < data <= ours.file_size - ours.data_offset
    assert took < 1.0


def test_sixty_million_layers_are_refused_at_once(folder: Path) -> None:
    """The issue's case: a ~200-byte file claiming 60 million layers took 3 minutes and 1.5 GB."""
    path = folder / "sixty-million.gguf"
    w = GGUFWriter(path, "llama")
    w.add_block_count(60_000_000)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    assert path.stat().st_size < 256
    result = bounded(lambda: read_facts([path]))
    assert isinstance(result, InvalidRequest) and "claims 60000000 layers" in result.message


def count_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every count, length, type and scalar in a well-formed little-endian
    header: where a crafted file would lie. Independent of the reader under test."""
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    out = [(8, 8), (16, 8)]
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def field(width: int) -> int:
        nonlocal pos
        out.append((pos, width))
        value = int.from_bytes(data[pos:pos + width], "little")
        pos += width
        return value

    def string() -> None:
        nonlocal pos
        length = field(8)
        pos += length

    for _ in range(n_kv):
        string()
        vtype = field(4)
        if vtype == 8:
            string()
        elif vtype == 9:
            itype, n = field(4), field(8)
            for _ in range(n):
                if itype == 8:
                    string()
                else:
                    field(sizes[itype])
        else:
            field(sizes[vtype])
    for _ in range(n_tensors):
        string()
        for _ in range(field(4)):
            field(8)
        field(4)
        field(8)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_headers_are_refused_in_bounded_time_and_memory(folder: Path, valid: Path,
                                                                 data: st.DataObject) -> None:
    original = valid.read_bytes()
    fields = count_fields(original)
    buf = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["field", "field", "byte", "cut"]))
        if kind == "field":
            pos, width = data.draw(st.sampled_from(fields))
            value = data.draw(U64) % (1 << (8 * width))
            buf[pos:pos + width] = value.to_bytes(width, "little")
        elif kind == "byte" and buf:
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del buf[data.draw(st.integers(0, len(buf))):]
    path = folder / "mutated.gguf"
    path.write_bytes(bytes(buf))
    result = bounded(lambda: read_facts([path]))
    if isinstance(result, ModelFacts):
        assert len(result.layer_bytes) <= len(read_header(path).tensors)


@st.composite
def crafted_headers(draw: st.DrawFn) -> bytes:
    """Headers built from whatever counts, lengths and types hypothesis picks."""
    out = bytearray(b"GGUF")
    out += struct.pack("<I", draw(st.sampled_from([1, 2, 3, 3 << 24, 99])))
    out += struct.pack("<QQ", draw(U64), draw(U64))
    keys = st.sampled_from(["general.architecture", "llama.block_count", "general.alignment",
                            "llama.attention.head_count", "tokenizer.ggml.tokens", "k"])
    for _ in range(draw(st.integers(0, 5))):
        key = draw(keys).encode()
        out += struct.pack("<Q", draw(st.one_of(st.just(len(key)), U64))) + key
        vtype = draw(st.integers(0, 13))
        out += struct.pack("<I", vtype)
        if vtype == 9:
            out += struct.pack("<IQ", draw(st.integers(0, 13)), draw(U64))
        elif vtype == 8:
            out += struct.pack("<Q", draw(U64))
        out += draw(st.binary(max_size=24))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([b"blk.0.w", b"token_embd.weight", b"blk.99999999999.x"]))
        out += struct.pack("<Q", len(name)) + name
        n_dims = draw(st.integers(0, 6))
        out += struct.pack("<I", n_dims) + b"".join(struct.pack("<Q", draw(U64)) for _ in range(n_dims))
        out += struct.pack("<IQ", draw(st.integers(0, 40)), draw(U64))
    out += draw(st.binary(max_size=64))
    return bytes(out)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crafted_headers())
def test_crafted_headers_are_refused_in_bounded_time_and_memory(folder: Path, raw: bytes) -> None:
    path = folder / "crafted.gguf"
    path.write_bytes(raw)
    bounded(lambda: read_facts([path]))


@given(st.binary(max_size=256))
def test_parse_header_of_any_bytes_raises_only_invalid_request(raw: bytes) -> None:
    try:
        parse_header(b"GGUF" + raw)
    except InvalidRequest:
        pass
