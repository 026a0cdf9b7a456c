"""The node control API on the wire: its paths and its messages, one definition for both ends.

The agent (hearth.rpc_pool.agent) serves these paths with these models and the client
(hearth.node_api.client) asks them, so the two cannot drift apart. Answers come from another
machine, so every model that the client parses is strict about what it relies on: a lease id
that goes back into a URL path, an endpoint it connects to, a status whose record is checked by
the discovery parser. Fields a node adds later are ignored (a newer node still talks to us).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from hearth.discovery.records import DeviceInfo, PeerRecord, parse_record
from hearth.net.endpoint import Endpoint

STATUS = "/v1/node"
"""GET: the node as the LAN sees it, its budget and its leases (ids shortened)."""
PROVE = "/v1/node/prove"
"""POST: sign a nonce with the key the node id names."""
LEASES = "/v1/leases"
"""POST: take a lease (201)."""
LEASE = "/v1/leases/{lease_id}"
"""DELETE: give a lease back (204)."""
HEARTBEAT = "/v1/leases/{lease_id}/heartbeat"
"""POST: keep a lease alive."""
DRAIN = "/v1/node/drain"
"""POST: take no new leases (or again, with {"draining": false}); from the node's machine or signed by its key."""
STOP = "/v1/node/stop"
"""POST: shut the agent down, its leases' RPC servers with it; from the node's machine or signed by its key."""

LEASE_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
LeaseId = Annotated[str, Field(min_length=8, max_length=64, pattern=LEASE_ID_PATTERN)]
"""A full lease id: safe to put into a URL path as it is."""
NONCE_CHARS = (22, 100)
"""16 to 64 random bytes, base64url."""


def lease_path(lease_id: str) -> str:
    return LEASE.format(lease_id=lease_id)


def heartbeat_path(lease_id: str) -> str:
    return HEARTBEAT.format(lease_id=lease_id)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ProveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nonce: str = Field(min_length=NONCE_CHARS[0], max_length=NONCE_CHARS[1],
                       description="16 to 64 random bytes, base64url")


B64URL_PATTERN = r"^[A-Za-z0-9_-]*$"


class ProveAnswer(_Message):
    node_id: str = Field(max_length=64)
    public_key: str = Field(max_length=128, pattern=B64URL_PATTERN)
    """base64url"""
    signature: str = Field(max_length=256, pattern=B64URL_PATTERN)
    """base64url, over the proof context and the nonce"""


class LeaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bytes: int = Field(ge=0, le=2**50, description="memory the lease will use (model share + KV)")


class LeaseView(_Message):
    """A lease as anyone may see it: the id cut short, since the full id renews or releases it."""

    lease_id: str = Field(max_length=64)
    holder: str = Field(max_length=128)
    """The lessee: its node id when paired, else its address."""
    bytes: int = Field(ge=0)
    used: int = Field(ge=0)
    endpoint: str = Field(max_length=64)
    transport: Literal["plain", "sealed"]
    expires_in: float = Field(ge=0)
    refused_connections: int = Field(ge=0)


class HeldLease(LeaseView):
    """A lease as its holder sees it (the answer to a heartbeat): the full id, a usable endpoint."""

    lease_id: LeaseId

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        Endpoint.parse(value, ip=True)  # ValueError: pydantic names the field
        return value

    @property
    def gate(self) -> Endpoint:
        """Where the lessee connects (checked to parse when the message was read)."""
        return Endpoint.parse(self.endpoint, ip=True)


class Granted(HeldLease):
    """The answer to a lease request."""

    rpc_version: str = Field(max_length=32)
    node_id: str = Field(max_length=64)


class DrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    draining: StrictBool = True


class ControlAnswer(_Message):
    """The answer to a drain or a stop."""

    node_id: str = Field(max_length=64)
    name: str = Field(max_length=128)
    draining: bool
    stopping: bool = False
    leases: int = Field(ge=0)
    """Leases still running (they run out; a stop ends them)."""


RECORD_KEYS = ("id", "name", "v", "rpc", "port", "dev", "full")


class NodeStatus(_Message):
    """The record's properties (strings, as in the mDNS record), then what only the API tells.
    Beyond the record every field may be missing: a node of another hearth version must still
    get its record checked, and a clear "update hearth" when its RPC version differs."""

    id: str = Field(max_length=64)
    name: str = Field(max_length=128)
    v: str = Field(max_length=64)
    rpc: str = Field(max_length=32)
    port: str = Field(max_length=8)
    dev: str = Field(max_length=1024)
    full: str | None = Field(default=None, max_length=1)
    public_key: str | None = Field(default=None, max_length=128)
    budget: int | None = Field(default=None, ge=0)
    leased_bytes: int | None = Field(default=None, ge=0)
    max_leases: int | None = Field(default=None, ge=0)
    per_holder: int | None = Field(default=None, ge=0)
    min_lease_bytes: int | None = Field(default=None, ge=0)
    devices: list[DeviceInfo] = Field(default_factory=list, max_length=64)
    leases: list[LeaseView] = Field(default_factory=list, max_length=1024)

    @classmethod
    def of(cls, record: PeerRecord, **detail: object) -> NodeStatus:
        return cls.model_validate({**record.to_properties(), "devices": list(record.devices), **detail})

    def record(self, address: str) -> PeerRecord:
        """The discovery record this status carries, checked by the discovery parser (RecordError)."""
        props = {k: getattr(self, k) for k in RECORD_KEYS}
        return parse_record({k.encode(): v.encode() for k, v in props.items() if v is not None}, [address])


class ErrorDetail(_Message):
    message: str = Field(max_length=4096)
    type: str | None = Field(default=None, max_length=64)
    param: str | None = Field(default=None, max_length=256)
    code: str | None = Field(default=None, max_length=64)


class ErrorBody(_Message):
    """hearth's error body (OpenAI-shaped, hearth.net.http_errors)."""

    error: ErrorDetail
