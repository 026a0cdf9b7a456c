"""Request bodies of Ollama's model routes (/api/show, /api/embed, /api/pull, ...) and its
`keep_alive` durations, validated strictly: an unknown field is refused by name."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearth.server.durations import KeepAlive
from hearth.server.schemas import Name, Text

ModelName = Annotated[Name, Field(min_length=1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Named(_Body):
    """Ollama's clients send `model`; older ones `name`."""

    model: ModelName

    @model_validator(mode="before")
    @classmethod
    def _older_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model" not in data and "name" in data:
            return {("model" if k == "name" else k): v for k, v in data.items()}
        return data

    @property
    def model_name(self) -> str:
        return self.model.strip()


class ShowRequest(_Named):
    verbose: bool = False


class DeleteRequest(_Named):
    pass


class PullRequest(_Named):
    insecure: bool = False
    stream: bool = True


class CopyRequest(_Body):
    source: ModelName
    destination: ModelName


class EmbedOptions(_Body):
    """The options an embedding honours; others (sampling ones too) are refused by name."""

    num_ctx: int | None = Field(default=None, ge=1)


class EmbedRequest(_Body):
    model: ModelName
    input: Text | list[Text]
    """Empty (\"\" or []) loads the model and embeds nothing, as Ollama does."""
    truncate: bool = True
    dimensions: int | None = Field(default=None, ge=1)
    keep_alive: KeepAlive = None
    options: EmbedOptions = Field(default_factory=EmbedOptions)

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingsRequest(_Body):
    """The legacy /api/embeddings: one prompt, one vector."""

    model: ModelName
    prompt: Text = ""
    keep_alive: KeepAlive = None
    options: EmbedOptions = Field(default_factory=EmbedOptions)
