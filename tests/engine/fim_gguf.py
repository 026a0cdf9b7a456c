"""A copy of the smollm2 GGUF whose metadata names fill-in-the-middle tokens (smollm2 has none),
written with the `gguf` package: the positive path of `suffix`."""

from __future__ import annotations

from pathlib import Path

FIM_IDS = {"pre": 3, "suf": 4, "mid": 5}
"""Ids of three of smollm2's control tokens (<repo_name>, <reponame>, <file_sep>), named FIM tokens."""


def write_fim_copy(source: Path, target: Path) -> Path:
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata, get_field_data

    reader = gguf.GGUFReader(source, "r")
    writer = gguf.GGUFWriter(target, arch=get_field_data(reader, gguf.Keys.General.ARCHITECTURE),
                             endianess=reader.endianess)
    u32 = gguf.GGUFValueType.UINT32
    keys = {"pre": gguf.Keys.Tokenizer.FIM_PRE_ID, "suf": gguf.Keys.Tokenizer.FIM_SUF_ID,
            "mid": gguf.Keys.Tokenizer.FIM_MID_ID}
    copy_with_new_metadata(reader, writer, {keys[k]: MetadataDetails(u32, v) for k, v in FIM_IDS.items()}, [])
    return target
