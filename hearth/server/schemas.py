"""Request bodies of the OpenAI- and Ollama-compatible routes, validated strictly."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from hearth.server.fields import without_empty_extras


def _unicode(value: str) -> str:
    """JSON can carry lone surrogates (\\ud800), which are not text: refuse them here, by field,
    rather than fail later when the text is encoded."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode text (a lone surrogate at character {exc.start})") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]
Name = Annotated[Text, Field(max_length=256)]


class _Strict(BaseModel):
    """A request part that refuses fields it does not declare, by name (fields.refusal): nothing a
    client sends is silently ignored. Undeclared fields that ask for nothing (null, []) are dropped."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_empty_extras(cls, data: Any) -> Any:
        return without_empty_extras(data, cls.model_fields)


def _stop_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class TextPart(_Strict):
    type: Literal["text"]
    text: Text


class ChatMessage(_Strict):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def for_template(self) -> dict[str, str]:
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    model_config = ConfigDict(extra="forbid")

    model: Name | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: Text | list[Text] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="hearth generates one choice per request")

    def stops(self) -> list[str]:
        return _stop_list(self.stop)

    def engine_fields(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": _stop_list(self.stop),
        }


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)

    def texts(self) -> list[str]:
        return [m.text() for m in self.messages]

    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _newer_name(self) -> ChatCompletionRequest:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return self

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def engine_logprobs(self) -> dict[str, Any]:
        """The engine's `logprobs` field: alternatives per token, or nothing when not asked."""
        return {"logprobs": self.top_logprobs or 0} if self.logprobs else {}


class CompletionRequest(_Sampling):
    prompt: Text | list[Text]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False

    @model_validator(mode="after")
    def _echo_without_logprobs(self) -> CompletionRequest:
        if self.echo and self.logprobs is not None:
            raise ValueError("echo with logprobs would need the prompt's logprobs, which hearth does not "
                             "compute; ask for one or the other")
        return self

    def engine_logprobs(self) -> dict[str, Any]:
        return {} if self.logprobs is None else {"logprobs": self.logprobs}

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("hearth takes one prompt per request")
        return v

    def texts(self) -> list[str]:
        return [self.prompt_text()]

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class EmbeddingRequest(_Strict):
    model_config = ConfigDict(extra="forbid")

    model: Name | None = None
    input: Text | list[Annotated[Text, Field(min_length=1)]] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# -- Ollama ------------------------------------------------------------------------------
class OllamaOptions(_Strict):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    num_predict: int | None = None
    stop: list[Text] | None = None

    def engine_fields(self) -> dict[str, Any]:
        # Ollama's num_predict: -1 (or absent) means no limit.
        limit = self.num_predict if self.num_predict is not None and self.num_predict > 0 else None
        return {"max_tokens": limit, "temperature": self.temperature, "top_p": self.top_p,
                "seed": self.seed, "stop": list(self.stop or [])}


class OllamaMessage(_Strict):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: Text


class OllamaChatRequest(_Strict):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[Name, Field(min_length=1)]
    messages: list[OllamaMessage] = Field(min_length=1)
    stream: bool = True
    options: OllamaOptions = Field(default_factory=OllamaOptions)

    def texts(self) -> list[str]:
        return [m.content for m in self.messages]


class OllamaGenerateRequest(_Strict):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[Name, Field(min_length=1)]
    prompt: Text
    system: Text | None = None
    stream: bool = True
    raw: bool = False
    options: OllamaOptions = Field(default_factory=OllamaOptions)

    def texts(self) -> list[str]:
        return [self.prompt, self.system or ""]
