from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import BackendMissing
from hearth.ggml.native import check_rpc_backend, llama_lib_dir


def test_installed_build_has_the_rpc_backend() -> None:
    lib = check_rpc_backend()
    assert lib.parent == llama_lib_dir() and lib.name.startswith("libggml-rpc")


def test_missing_backend_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(BackendMissing, match="-DGGML_RPC=ON"):
        check_rpc_backend(tmp_path)


def test_a_broken_library_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "libggml-rpc.so").write_bytes(b"not a shared object")
    with pytest.raises(BackendMissing, match="cannot be loaded"):
        check_rpc_backend(tmp_path)
