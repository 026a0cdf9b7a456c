"""Loading a GGUF onto this CPU and leased ggml RPC servers, through llama-cpp-python."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def model_params(endpoints: list[str], split: list[float] | None,
                  progress: Callable[[float], None]) -> Iterator[dict[str, Any]]:
    """Adjust the model parameters llama-cpp-python builds, for the duration of the load.

    llama-cpp-python 0.3.36 takes neither a device list nor a progress callback, and its default
    device choice leaves registered RPC devices unused (FIELD-NOTES.md); so the parameters it gets
    from `llama_model_default_params` get our NULL-terminated device list (layers on the leased RPC
    servers, and on this CPU when split gives it a share) and a load-progress callback. Yields the
    Llama keyword arguments to add.
    """
    import ctypes

    from llama_cpp import llama_cpp as low

    kwargs: dict[str, Any] = {}
    array = None
    if endpoints:
        from hearth.ggml.native import add_servers, cpu_device

        devices = add_servers(endpoints)
        shares = list(split) if split else [1.0] * len(devices)
        if len(shares) == len(devices) + 1:
            devices.append(cpu_device())  # the last share is this machine's
        elif len(shares) != len(devices):
            raise ValueError(f"{len(shares)} split shares for {len(devices)} RPC devices")
        array = (ctypes.c_void_p * (len(devices) + 1))(*devices, None)
        kwargs = {"n_gpu_layers": -1, "tensor_split": shares}

    def on_progress(fraction: float, _user: Any) -> bool:
        progress(fraction)
        return True  # keep loading

    callback = low.llama_progress_callback(on_progress)
    original = low.llama_model_default_params

    def adjusted() -> Any:
        params = original()
        if array is not None:
            params.devices = ctypes.cast(array, ctypes.c_void_p)
        params.progress_callback = callback
        return params

    low.llama_model_default_params = adjusted  # what llama.py calls
    try:
        yield kwargs
    finally:
        low.llama_model_default_params = original


def load_model(model_path: str) -> Any:
    """A llama_cpp._internals.LlamaModel on this CPU, with the parameters Llama gives it."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # as Llama(verbose=False): llama.cpp's log lines only for errors
    params: Any = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    return LlamaModel(path_model=model_path, params=params, verbose=False)
