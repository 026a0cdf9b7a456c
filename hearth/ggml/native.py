"""ctypes access to llama-cpp-python's ggml libraries: the build check, devices, RPC server and client.

Import llama_cpp first so that these calls use the same ggml instance as the engine.
"""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

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


DEV_TYPE_CPU = 0
c_dev = ctypes.c_void_p


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    kind: str
    free: int
    total: int


@cache
def libs() -> tuple[Any, Any]:
    """(libggml, libggml-rpc) with their signatures declared."""
    import llama_cpp  # noqa: F401  (loads ggml first: one instance for the engine and for us)

    rpc_path = check_rpc_backend()
    ggml = ctypes.CDLL(str(llama_lib_dir() / "libggml.so"))
    rpc = ctypes.CDLL(str(rpc_path))
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    ggml.ggml_backend_dev_get.restype = c_dev
    ggml.ggml_backend_dev_name.argtypes = [c_dev]
    ggml.ggml_backend_dev_name.restype = ctypes.c_char_p
    ggml.ggml_backend_dev_description.argtypes = [c_dev]
    ggml.ggml_backend_dev_description.restype = ctypes.c_char_p
    ggml.ggml_backend_dev_type.argtypes = [c_dev]
    ggml.ggml_backend_dev_type.restype = ctypes.c_int
    ggml.ggml_backend_dev_memory.argtypes = [c_dev, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
    ggml.ggml_backend_dev_memory.restype = None
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    ggml.ggml_backend_dev_by_type.restype = c_dev
    ggml.ggml_backend_register.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_register.restype = None
    ggml.ggml_backend_reg_dev_count.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_reg_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_reg_dev_get.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    ggml.ggml_backend_reg_dev_get.restype = c_dev
    rpc.ggml_backend_rpc_start_server.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                                   ctypes.c_size_t, ctypes.POINTER(c_dev)]
    rpc.ggml_backend_rpc_start_server.restype = None
    rpc.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
    rpc.ggml_backend_rpc_add_server.restype = ctypes.c_void_p
    return ggml, rpc


_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


def describe(dev: int) -> Device:
    ggml, _ = libs()
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    return Device(
        name=(ggml.ggml_backend_dev_name(dev) or b"").decode(),
        description=(ggml.ggml_backend_dev_description(dev) or b"").decode(),
        kind=_KINDS.get(ggml.ggml_backend_dev_type(dev), "other"),
        free=free.value,
        total=total.value,
    )


def local_devices() -> list[int]:
    """This machine's compute devices (not RPC ones, not accelerator helpers)."""
    ggml, _ = libs()
    devs = [ggml.ggml_backend_dev_get(i) for i in range(ggml.ggml_backend_dev_count())]
    return [d for d in devs if _KINDS.get(ggml.ggml_backend_dev_type(d)) in ("cpu", "gpu", "igpu")
            and not describe(d).name.startswith("RPC")]


def cpu_device() -> int:
    ggml, _ = libs()
    dev = ggml.ggml_backend_dev_by_type(DEV_TYPE_CPU)
    if not dev:
        raise RuntimeError("ggml reports no CPU device")
    return int(dev)


def start_server(endpoint: str, cache_dir: str | None, n_threads: int) -> None:
    """Serve this machine's devices on endpoint; blocks for the life of the process."""
    _, rpc = libs()
    devs = local_devices()
    arr = (c_dev * len(devs))(*devs)
    rpc.ggml_backend_rpc_start_server(endpoint.encode(), cache_dir.encode() if cache_dir else None,
                                      n_threads, len(devs), arr)


def add_servers(endpoints: list[str]) -> list[int]:
    """Register RPC servers with ggml; return their devices in order."""
    ggml, rpc = libs()
    out: list[int] = []
    for ep in endpoints:
        reg = rpc.ggml_backend_rpc_add_server(ep.encode())
        if not reg:
            raise RuntimeError(f"ggml could not add the RPC server {ep}")
        ggml.ggml_backend_register(reg)
        out.extend(ggml.ggml_backend_reg_dev_get(reg, i) for i in range(ggml.ggml_backend_reg_dev_count(reg)))
    return out
