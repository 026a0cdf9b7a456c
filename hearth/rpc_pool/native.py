"""ctypes access to ggml's backend registry and RPC functions in llama-cpp-python's libraries.

Import llama_cpp first so that these calls use the same ggml instance as the engine.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cache
from typing import Any

from hearth.engine.native import check_rpc_backend, llama_lib_dir

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
