"""Request bodies of Ollama's model routes (/api/show, /api/embed, /api/pull, ...) and its
`keep_alive` durations, validated strictly: an unknown field is refused by name."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearth.server.durations import KeepAlive
from hearth.server.schemas import Name, Text

ModelName = Annotated[Name, Field(min_length=1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Named(_Body):
    """Ollama's clients send `model`; older ones `name`."""

    model: ModelName | None = None
    name: ModelName | None = None

    @model_validator(mode="after")
    def _one_name(self) -> _Named:
        if self.model is None:
            if self.name is None:
                raise ValueError("give the model's name in `model`")
            self.model = self.name
        return self

    @property
    def model_name(self) -> str:
        assert self.model is not None
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
    """The options an embedding honours; others are refused by name."""

    num_ctx: int | None = Field(default=None, ge=1)
    seed: int | None = None
    temperature: float | None = None


class EmbedRequest(_Body):
    model: ModelName
    input: Text | Annotated[list[Text], Field(min_length=1)]
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
