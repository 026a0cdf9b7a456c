"""What a public worker runs on: CPU model, cores, memory, GPU, as `hearth contribute` reports it.

Printed for the owner and sent to the coordinator with the worker's signed registration
(`POST /v1/workers`), so requesters and the operator can see what serves them. The GPU comes from
ggml's own device list (the devices the engine would use), the rest from the operating system.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

from hearth.public_swarm.coordinator.wire import Hardware
from hearth.units import human

log = logging.getLogger("hearth.contribute")
TEXT_MAX = 128


def clean(text: str) -> str:
    """Printable text the coordinator's registration takes: no control characters, one line, bounded."""
    kept = "".join(c for c in text if not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000))
    return " ".join(kept.split())[:TEXT_MAX]


def cpu_model(cpuinfo: str) -> str | None:
    """The CPU's model from /proc/cpuinfo's text ('model name', or 'Hardware'/'Model' on ARM)."""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), clean(value)
        if sep and value and key in ("model name", "hardware", "model", "cpu model") and key not in found:
            found[key] = value
    for key in ("model name", "cpu model", "hardware", "model"):
        if key in found:
            return found[key]
    return None


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _gpu() -> tuple[str | None, int]:
    """The first GPU ggml sees and its memory, or (None, 0)."""
    try:
        from hearth.ggml.native import describe, local_devices

        gpus = [d for d in (describe(dev) for dev in local_devices()) if d.kind in ("gpu", "igpu")]
    except (ImportError, OSError, RuntimeError) as exc:
        log.info("cannot list ggml devices: %s", exc)
        return None, 0
    if not gpus:
        return None, 0
    return clean(gpus[0].description or gpus[0].name) or "GPU", gpus[0].total


def detect() -> Hardware:
    """This machine's hardware (blocking: reads /proc and loads ggml; call it in a thread)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        info = ""
    cpu = cpu_model(info) or clean(platform.processor() or platform.machine()) or "unknown"
    gpu, gpu_memory = _gpu()
    return Hardware(cpu=cpu, cores=max(1, min(4096, os.cpu_count() or 1)),
                    memory_bytes=_memory_bytes(), gpu=gpu, gpu_memory_bytes=gpu_memory)


def describe_hardware(hw: Hardware) -> str:
    """One line for the owner: 'AMD EPYC, 2 cores, 8.3 GB memory, GPU: none found'."""
    gpu = f"{hw.gpu} ({human(hw.gpu_memory_bytes)})" if hw.gpu else "none found"
    return f"{hw.cpu}, {hw.cores} cores, {human(hw.memory_bytes)} memory, GPU: {gpu}"
