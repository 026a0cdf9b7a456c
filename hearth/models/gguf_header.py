"""A bounded reader for GGUF headers: key/values and tensor infos, checked against the file.

GGUF files cross machine boundaries (downloads, files people hand each other), and every count
in a header is only the writer's claim. gguf's own reader trusts those claims (a 192-byte file
claiming 60 million layers took minutes and gigabytes). Here each count is checked against what
the rest of the file can hold before anything is allocated or looped over, the big tokenizer
arrays are stepped over rather than parsed, and every problem is one InvalidRequest.

`parse_header` works on bytes (or an mmap) and does no I/O; `read_header` maps a file for it.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from hearth.errors import InvalidRequest

MAX_KV = 1 << 16
"""Key/value pairs in one header (real models have about 40)."""
MAX_TENSORS = 1 << 20
"""Tensor infos in one file (a 70B model has about 720)."""
MAX_ARRAY = 1 << 22
"""Items in one array (the largest vocabularies and merge lists have a few hundred thousand)."""
MAX_KEY = 1 << 10
"""Bytes in a key or a tensor name (llama.cpp allows 63 for names)."""
KEEP_STRING = 1 << 20
"""Longer string values are stepped over and recorded as Skipped (chat templates are KBs)."""
KEEP_ARRAY = 1 << 12
"""Longer numeric arrays (token scores, types) are stepped over; per-layer arrays are kept."""
MAX_KEPT = 64 << 20
"""Bytes of values kept from one header, whatever the file claims."""
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_U32 = (1 << 32) - 1

_STRING, _ARRAY = 8, 9
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_MIN_KV = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR = 8 + 4 + 4 + 8  # name length, n_dims, type, offset


@dataclass(frozen=True)
class Skipped:
    """A value too large to keep (tokenizer arrays, huge strings): only what it was and its length."""

    kind: str
    length: int


Value = int | float | bool | str | tuple[int | float | bool, ...] | Skipped


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    type: int
    offset: int
    """From the start of the data section."""
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    fields: dict[str, Value]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    """Where tensor data starts in the file (the header's end, aligned)."""
    file_size: int


class _Cursor:
    """Reads from a buffer, refusing any read or count the buffer cannot hold."""

    def __init__(self, buf: bytes | mmap.mmap, label: str) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.label = label
        self.endian = "<"
        self.kept = 0

    def fail(self, reason: str) -> InvalidRequest:
        return InvalidRequest(f"{self.label} is not a readable GGUF file: {reason}. Pull it again, or check "
                              "where it came from.")

    @property
    def left(self) -> int:
        return self.size - self.pos

    def unpack(self, fmt: str) -> int | float | bool:
        n = struct.calcsize(fmt)
        if n > self.left:
            raise self.fail(f"it ends inside its header (at byte {self.size})")
        (value,) = struct.unpack_from(self.endian + fmt, self.buf, self.pos)
        self.pos += n
        return value  # type: ignore[no-any-return]

    def u32(self) -> int:
        return int(self.unpack("I"))

    def u64(self) -> int:
        return int(self.unpack("Q"))

    def count(self, what: str, limit: int, min_size: int) -> int:
        """A count from the header, bounded by `limit` and by the bytes left to hold its items."""
        n = self.u64()
        if n > limit or n * min_size > self.left:
            raise self.fail(f"it claims {n} {what}, more than {'it can hold' if n <= limit else limit}")
        return n

    def skip(self, n: int) -> None:
        if n > self.left:
            raise self.fail(f"it ends inside its header (at byte {self.size})")
        self.pos += n

    def string(self, what: str, limit: int) -> str | Skipped:
        n = self.u64()
        if n > self.left:
            raise self.fail(f"a {what} claims {n} bytes, more than the file holds")
        if n > limit:
            self.pos += n
            return Skipped("string", n)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"a {what} is not UTF-8") from exc

    def name(self, what: str) -> str:
        s = self.string(what, MAX_KEY)
        if isinstance(s, Skipped):
            raise self.fail(f"a {what} is {s.length} bytes long (at most {MAX_KEY})")
        return s

    def keep(self, n: int) -> None:
        self.kept += n
        if self.kept > MAX_KEPT:
            raise self.fail(f"its header holds more than {MAX_KEPT >> 20} MiB of values")


def _value(c: _Cursor, vtype: int, key: str) -> Value:
    if vtype in _SCALARS:
        return c.unpack(_SCALARS[vtype])
    if vtype == _STRING:
        s = c.string(f"value of {key!r}", KEEP_STRING)
        c.keep(s.length if isinstance(s, Skipped) else len(s))
        return s
    if vtype != _ARRAY:
        raise c.fail(f"{key!r} has unknown value type {vtype}")
    itype = c.u32()
    if itype in _SCALARS:
        fmt = _SCALARS[itype]
        size = struct.calcsize(fmt)
        n = c.count(f"items in {key!r}", MAX_ARRAY, size)
        if n > KEEP_ARRAY:
            c.skip(n * size)
            return Skipped(f"array of type {itype}", n)
        c.keep(n * 8)
        items = struct.unpack_from(f"{c.endian}{n}{fmt}", c.buf, c.pos)
        c.pos += n * size
        return tuple(items)
    if itype == _STRING:
        n = c.count(f"items in {key!r}", MAX_ARRAY, 8)
        # Step over the strings (a vocabulary: up to a few hundred thousand). Each step consumes
        # at least 8 bytes, so n steps are bounded by the file; a length past the end stops it.
        length_at = struct.Struct(c.endian + "Q").unpack_from
        buf, pos, end = c.buf, c.pos, c.size
        for _ in range(n):
            if pos + 8 > end:
                raise c.fail(f"the strings of {key!r} run past the end of the file")
            pos += 8 + length_at(buf, pos)[0]
        if pos > end:
            raise c.fail(f"the strings of {key!r} run past the end of the file")
        c.pos = pos
        return Skipped("array of strings", n)
    raise c.fail(f"{key!r} is an array of type {itype}; only numbers and strings are supported")


def _tensor(c: _Cursor, alignment: int) -> TensorInfo:
    name = c.name("tensor name")
    n_dims = c.u32()
    if n_dims > MAX_DIMS:
        raise c.fail(f"tensor {name!r} claims {n_dims} dimensions (at most {MAX_DIMS})")
    dims = tuple(c.u64() for _ in range(n_dims))
    ttype = c.u32()
    offset = c.u64()
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ValueError, KeyError) as exc:
        raise c.fail(f"tensor {name!r} has unknown type {ttype}") from exc
    n_elements = 1
    for d in dims:
        n_elements *= d
    if dims and dims[0] % block:
        raise c.fail(f"tensor {name!r}'s first dimension {dims[0]} is not a multiple of its block size {block}")
    if offset % alignment:
        raise c.fail(f"tensor {name!r}'s offset {offset} is not a multiple of the alignment {alignment}")
    return TensorInfo(name, dims, ttype, offset, n_elements, n_elements // block * type_size)


def parse_header(buf: bytes | mmap.mmap, label: str = "the file") -> GGUFHeader:
    """Parse a whole GGUF file's header (buf is the whole file: tensor extents are checked too)."""
    c = _Cursor(buf, label)
    if bytes(buf[:4]) != b"GGUF":
        raise c.fail("it does not start with the GGUF magic")
    c.pos = 4
    version = c.u32()
    if version not in (2, 3):
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped not in (2, 3):
            raise c.fail(f"GGUF version {version} is not supported (2 and 3 are)")
        c.endian, version = ">", swapped
    n_tensors = c.count("tensors", MAX_TENSORS, _MIN_TENSOR)
    n_kv = c.count("key/value pairs", MAX_KV, _MIN_KV)
    fields: dict[str, Value] = {}
    for _ in range(n_kv):
        key = c.name("key")
        if key in fields:
            raise c.fail(f"key {key!r} appears twice")
        fields[key] = _value(c, c.u32(), key)
    alignment = fields.get("general.alignment", 32)
    if type(alignment) is not int or not 0 < alignment <= MAX_U32 or alignment & (alignment - 1):
        raise c.fail(f"general.alignment {alignment!r} is not a power of two")
    if n_tensors * _MIN_TENSOR > c.left:
        raise c.fail(f"it claims {n_tensors} tensors, more than it can hold")
    tensors = [_tensor(c, alignment) for _ in range(n_tensors)]
    data_offset = -(-c.pos // alignment) * alignment
    data_size = c.size - data_offset
    names: set[str] = set()
    for t in tensors:
        if t.name in names:
            raise c.fail(f"tensor {t.name!r} appears twice")
        names.add(t.name)
        if t.offset + t.n_bytes > data_size:
            raise c.fail(f"tensor {t.name!r} ({t.n_bytes} bytes at {t.offset}) reaches past the file's end; "
                         "is the file complete?")
    return GGUFHeader(version, fields, tuple(tensors), data_offset, c.size)


def read_header(path: Path) -> GGUFHeader:
    """Map the file read-only and parse its header; only the header's pages are read."""
    label = str(path)
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            if size < 24:
                raise InvalidRequest(f"{label} is not a readable GGUF file: it is only {size} bytes long.")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return parse_header(mm, label)
    except OSError as exc:
        raise InvalidRequest(f"Cannot read {label}: {exc.strerror or exc}.") from exc
