"""Request fields hearth does not take: their refusal names them (issue 14, item 1).

Pure: no I/O. The request models (schemas.py) forbid fields they do not declare; the error
handler asks `refusal` for the message, which tells a known OpenAI or Ollama field hearth does not
support yet from a field no API has. README's table lists what each route accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KNOWN_UNSUPPORTED = frozenset({
    # OpenAI chat completions, completions, embeddings and message parts
    "audio", "best_of", "dimensions", "echo", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "metadata", "modalities", "parallel_tool_calls", "prediction", "presence_penalty",
    "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier",
    "service_tier", "store", "suffix", "tool_choice", "tools", "top_logprobs", "user", "verbosity",
    "web_search_options", "name", "tool_calls", "tool_call_id", "refusal", "image_url", "input_audio", "file",
    "include_obfuscation", "moderation", "prompt_cache_options",
    # Ollama generate, chat, embed and options
    "format", "keep_alive", "images", "template", "context", "think", "truncate", "tool_name", "thinking",
    "width", "height", "steps", "numa", "num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv",
    "logits_all", "vocab_only", "use_mmap", "use_mlock", "embedding_only", "num_thread", "num_keep", "top_k",
    "min_p", "tfs_z", "typical_p", "repeat_last_n", "repeat_penalty", "mirostat", "mirostat_tau",
    "mirostat_eta", "penalize_newline",
})
"""Fields of OpenAI's and Ollama's request schemas that hearth does not honour (yet)."""


def refusal(path: str) -> str:
    """The message of a 400 for the field at `path` ('tools', 'messages.0.name', 'options.top_k')."""
    name = path.rsplit(".", 1)[-1]
    if name in KNOWN_UNSUPPORTED:
        return (f"'{path}' is not supported by hearth yet; remove it from the request "
                "(README's table lists the fields each route supports).")
    return (f"'{path}' is not a field of this request; remove it "
            "(README's table lists the fields each route supports).")


def without_empty_extras(data: Any, declared: Mapping[str, object]) -> Any:
    """The body without undeclared fields that ask for nothing (null or []): Ollama's Python
    client always sends `tools: []`, other clients send nulls for options they leave unset.
    Any other undeclared field stays, to be refused by name."""
    if not isinstance(data, dict):
        return data
    return {k: v for k, v in data.items() if k in declared or not (v is None or v == [])}
