"""Checks on the installed llama.cpp build (ctypes; no model loaded)."""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

from hearth.errors import BackendMissing

FIX = (
    'Rebuild llama-cpp-python with the RPC backend: CMAKE_ARGS="-DGGML_RPC=ON -DGGML_NATIVE=OFF" '
    "pip install --force-reinstall --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 "
    "(or run `bash scripts/setup.sh`, which builds and caches the wheel)."
)
RPC_SYMBOLS = ("ggml_backend_rpc_start_server", "ggml_backend_rpc_add_server")


def llama_lib_dir() -> Path:
    """The `lib` folder of the installed llama_cpp package, found without importing it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise BackendMissing("llama-cpp-python is not installed. " + FIX)
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def check_rpc_backend(lib_dir: Path | None = None) -> Path:
    """Return the path of libggml-rpc, or raise BackendMissing saying how to fix it."""
    lib_dir = lib_dir if lib_dir is not None else llama_lib_dir()
    candidates = sorted(lib_dir.glob("libggml-rpc.*")) if lib_dir.is_dir() else []
    if not candidates:
        raise BackendMissing(f"llama.cpp's RPC backend (libggml-rpc) is not in {lib_dir}. " + FIX)
    try:
        lib = ctypes.CDLL(str(candidates[0]))
    except OSError as exc:
        raise BackendMissing(f"{candidates[0]} cannot be loaded ({exc}). " + FIX) from exc
    missing = [s for s in RPC_SYMBOLS if not hasattr(lib, s)]
    if missing:
        raise BackendMissing(f"{candidates[0]} lacks {', '.join(missing)}. " + FIX)
    return candidates[0]
