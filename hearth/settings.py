"""One settings tree for hearth, read from HEARTH_* environment variables."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hearth.errors import InvalidRequest
from hearth.ports import DEFAULT_SERVE_PORT, DEFAULT_WG_PORT, DEFAULT_WORKER_PAGE_PORT
from hearth.radius import parse_radius

DEFAULT_MODEL = "smollm2-135m"


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("hearth", appauthor=False))


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Settings(BaseSettings):
    """hearth's configuration; every field can be set as HEARTH_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    """Data folder: model store, keys, state. Tests and several nodes on one machine set it apart."""

    default_model: str = DEFAULT_MODEL
    """Model used when a command or request names none."""

    host: str = "127.0.0.1"
    """Address `hearth serve` binds to; anything but loopback needs an API key."""

    port: int = Field(default=DEFAULT_SERVE_PORT, ge=0, le=65535)
    """Port `hearth serve` listens on."""

    api_key: SecretStr | None = None
    """Bearer key clients must present; required when binding beyond loopback. Surrounding
    whitespace is stripped: HTTP drops it from headers, so such a key could never match."""

    n_ctx: int = Field(default=4096, ge=64)
    """Context window (tokens) the engine allocates, capped by the model's own."""

    n_threads: int = Field(default_factory=_default_threads, ge=1)
    """CPU threads the engine uses for decoding."""

    max_queue: int = Field(default=16, ge=0)
    """Requests that may wait for the engine before new ones get 429."""

    parallel: int | None = Field(default=None, ge=1, le=64)
    """Requests the engine decodes at once (its slots), each with its own n_ctx-token context.
    Unset: chosen from memory when a model loads, as many (1 to 4) as fit in half the memory
    left after the weights (orchestrator/slots_rules.choose_parallel)."""

    prompt_reuse: Literal["exact", "tokens"] = "exact"
    """What a request reuses of an earlier one's cache in its slot. "exact": only whole prompt
    chunks computed as a fresh prompt's, so a greedy reply is the same whatever ran before it.
    "tokens": every shared token, an earlier reply included (llama-server's prompt cache): a
    chat's next turn starts sooner, but its text may differ from a fresh cache's. A request that
    gives a `seed` is always exact, as are public jobs and spot-checks."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body the endpoint reads (413 beyond it)."""

    max_prompt_chars: int = Field(default=1_000_000, ge=1)
    """Most characters of prompt (all messages, or all inputs to embed) a request may carry;
    checked before tokenizing, which would otherwise hold the engine."""

    max_stop: int = Field(default=4, ge=0)
    """Most stop sequences per request."""

    max_stop_chars: int = Field(default=256, ge=1)
    """Longest stop sequence, in characters."""

    max_embed_inputs: int = Field(default=256, ge=1)
    """Most inputs one embeddings request may carry."""

    log_level: str = Field(default="warning", pattern=r"(?i)^(debug|info|warning|error)$")
    """How much `hearth serve` and `hearth node` log to stderr."""

    tunnel: str = Field(default="auto", pattern=r"^(auto|wireguard|sealed)$")
    """How paired peers' traffic travels: WireGuard (needs root or CAP_NET_ADMIN), the sealed
    fallback tunnel (no privileges), or auto: WireGuard when it can be set up."""

    wg_interface: str = Field(default="hearth0", pattern=r"^[A-Za-z0-9_-]{1,15}$")
    """The circle's WireGuard interface. Namespaces on one machine share /var/run/wireguard, so
    each needs its own name."""

    wg_port: int = Field(default=DEFAULT_WG_PORT, ge=1, le=65535)
    """UDP port of the circle's WireGuard interface."""

    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds a client has to send a request's headers (slow or silent connections are closed)."""

    max_connections_per_client: int = Field(default=32, ge=1)
    """Open connections one client address may hold on `hearth serve` or `hearth node`; beyond it,
    its oldest connection still waiting for headers closes, or the new one gets 503."""

    max_connections: int = Field(default=256, ge=1)
    """Open connections in all, per listener; at most half the process's file limit is used."""

    allowed_hosts: str = ""
    """Extra names clients may send in the Host header (comma-separated; `*` turns the check off).
    The bind address, `localhost` on loopback, and this machine's name when bound beyond loopback
    are always accepted."""

    cors_origins: str = ""
    """Web pages (origins, comma-separated: `https://app.example,http://localhost:3000`, or `*`) whose
    scripts may call this server from a browser (CORS, preflight answered). Empty by default: no
    CORS headers at all, so only the server's own chat page can use it from a browser."""

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            if origin != "*" and not re.fullmatch(r"https?://[^\s/]+", origin):
                raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port] (https://app.example, "
                                 "http://localhost:3000), comma-separated, or * for any page")
        return value

    coordinator: str | None = None
    """URL of the public swarm's coordinator (http(s)://HOST[:PORT]) that `hearth credits` asks,
    and where `--radius public` escalates; none by default: the public radius is opt-in."""

    max_price: int | None = None
    """Most a public request may cost, in whole credits per million tokens (`--max-price`); the
    coordinator refuses a model priced above it (402, naming the price and the ceiling). None: no
    ceiling. Written as pricing.parse_ceiling reads it: digits, `_` or `,` between them."""

    worker_page_port: int = Field(default=DEFAULT_WORKER_PAGE_PORT, ge=0, le=65535)
    """Port of `hearth contribute`'s own page on 127.0.0.1 (its --page-port), where `hearth serve`'s
    status reads what this machine served the public swarm; 0: do not look."""

    verified_only: bool = False
    """Ask the public swarm for trusted (verified) workers only: hearth's requests carry
    `X-Hearth-Verified-Only: 1`, and wait for such a worker rather than run on a new one (issue 11)."""

    radius: str = "household"
    """How far a request may reach when `--radius` is not given: machine, household, trusted or
    public (`hearth run`, `serve`, `plan`; commands that serve their own circle read public as trusted)."""

    public_ok: bool = False
    """Consent, for scripts and services, that with `--radius public` a prompt may leave the circle
    for strangers' machines. People answer once at a prompt instead (remembered in HEARTH_HOME)."""

    @field_validator("radius", mode="before")
    @classmethod
    def _radius(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return parse_radius(value, "HEARTH_RADIUS").value
        except InvalidRequest as exc:
            raise ValueError(exc.message) from exc

    @field_validator("parallel", mode="before")
    @classmethod
    def _unset_parallel(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("max_price", mode="before")
    @classmethod
    def _ceiling(cls, value: object) -> object:
        """pricing.parse_ceiling's rule, repeated here because settings sit below public_swarm
        (tests/test_settings_public.py checks that both agree)."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = value.strip().replace("_", "").replace(",", "") if isinstance(value, str) else None
        if text is not None and text.isascii() and text.isdigit() and len(text) <= 18:
            value = int(text)
        if type(value) is not int or not 1 <= value <= 10**18:
            raise ValueError("must be a whole number of credits per million tokens (1 or more)")
        return value

    @field_validator("api_key")
    @classmethod
    def _strip_key(cls, key: SecretStr | None) -> SecretStr | None:
        return SecretStr(key.get_secret_value().strip()) if key is not None else None

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


class UnusableHome(InvalidRequest):
    """HEARTH_HOME is not a folder hearth can write to."""

    code = "unusable_home"


def check_home(home: Path) -> None:
    """Create the data folder if needed and prove it writable, so that a file, a read-only folder
    or an unreachable parent is one clear error instead of a traceback from whichever command
    first writes there."""
    def unusable(reason: str) -> UnusableHome:
        return UnusableHome(f"HEARTH_HOME {home} {reason}; set HEARTH_HOME to a folder you can write to, "
                            "or fix its permissions.")

    try:
        if home.exists() and not home.is_dir():
            raise unusable("is not a folder")
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file or that we may not enter
        raise unusable(f"cannot be reached or created ({exc.strerror or exc})") from exc
    try:
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:
        raise unusable(f"is not writable ({exc.strerror or exc})") from exc


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (None means 'not given')."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)  # type: ignore[arg-type]
