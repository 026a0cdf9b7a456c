"""hearth's error tree.

Every error says what to do next. The CLI turns them into exit codes, the HTTP layer into
OpenAI-shaped bodies, both from the typed fields here (never by parsing message text). Callers
catch a category when they can act on any of its leaves (retry elsewhere, wait, reconnect).

    HearthError                       (exit 1, HTTP 500)
    ├── InvalidRequest                the input is wrong: fix it (exit 2, HTTP 400)
    │   ├── ContextOverflow           shorten the prompt or raise HEARTH_N_CTX
    │   ├── TooLarge                  a body over the limit (HTTP 413)
    │   ├── UnusableHome              settings: HEARTH_HOME cannot be used
    │   ├── NoLanAddress              pairing.addresses: name the address with --bind
    │   ├── PriceAboveCeiling         public_swarm.pricing: raise --max-price or pick a smaller model (HTTP 402)
    │   ├── LedgerInputInvalid        public_swarm.ledger: a malformed amount, account, hold id or key
    │   ├── KeyReused                 public_swarm.ledger: an idempotency key sent with other arguments (HTTP 422)
    │   ├── JobInputInvalid           public_swarm.coordinator.job_rules: a malformed job id, digest, size or state
    │   ├── NoCoordinator             public_swarm.coordinator.client: pass --coordinator or set HEARTH_COORDINATOR
    │   ├── AllowanceInputInvalid     public_swarm.coordinator.allowance_rules: not an IP address, or a bad token count
    │   ├── TrustInputInvalid         public_swarm.coordinator.trust_rules: a malformed node id, check id or address
    │   ├── LimitsInvalid             public_swarm.coordinator.ratelimit_rules: a limit setting out of range
    │   ├── NoCoordinatorSet          escalation.pool: --radius public needs HEARTH_COORDINATOR
    │   ├── ReceiptInvalid            public_swarm.receipts: a malformed receipt is refused
    │   │   └── ReceiptForged         signature, worker id or hashes do not match: do not pay it (HTTP 403)
    │   ├── MessageInvalid            public_swarm.protocol: a malformed worker/coordinator frame; the link closes
    │   └── NothingToOffer            public_swarm.offers: pull a model with a priced quantisation
    ├── ModelNotFound                 pull it, or check `hearth models` (exit 3, HTTP 404)
    │   └── ModelNotServed            public_swarm.coordinator.dispatch_rules: no worker serves that name (HTTP 404)
    ├── Unauthorized                  send the API key (HTTP 401)
    │   └── FreeTierClosed            public_swarm.coordinator.dispatch_rules: no free allowance here: sign the request
    ├── InsecureBind                  give an API key or bind to loopback (exit 2)
    ├── OutOfCapacity                 not enough room now: wait, free memory, or widen the radius
    │   ├── QueueFull                 retry after Retry-After (HTTP 429)
    │   ├── FreeAllowanceUsed         public_swarm.coordinator.allowance_rules: wait for the reset, or sign (HTTP 429)
    │   ├── RateLimited               public_swarm.coordinator.ratelimit_rules: retry after Retry-After (HTTP 429)
    │   ├── TooManyJobs               public_swarm.coordinator.ratelimit_rules: wait for a job to end (HTTP 429)
    │   ├── TooManyStreams            node_api.feed: too many event streams open; close one (HTTP 429)
    │   ├── DoesNotFit                orchestrator.planner: pair or add a machine (exit 6)
    │   ├── NoWorker                  public_swarm.coordinator.dispatch_rules: no live worker holds the model (HTTP 503)
    │   └── LeaseRefused              node_api.errors (also a RefusedByPeer)
    ├── RefusedByPeer                 another machine said no; its owner decides
    │   ├── LeaseRefused              node_api.errors: the node is full or this lessee holds its share (HTTP 409)
    │   ├── LeaseNotFound             node_api.errors: the lease expired; plan again (HTTP 404)
    │   ├── NodeRefused               a node's refusal this build has no class for: update hearth (HTTP 502)
    │   ├── LeaseDenied               orchestrator.placement (also a LeaseFailed)
    │   ├── Unsigned, NotPaired       pairing.signed: pair first (`hearth pair`)
    │   ├── NotThisMachine            rpc_pool.control: drain or stop a node from its own machine (HTTP 403)
    │   ├── NotOperator               public_swarm.coordinator.auth: only the operator grants credits (HTTP 403)
    │   └── CoordinatorRefused        public_swarm.coordinator.client: a refusal this build has no class for
    ├── LinkFailed                    a connection to another machine failed: check it, reconnect
    │   ├── NodeUnreachable           a node's agent did not answer: is `hearth node` running? (HTTP 503)
    │   ├── NodeAnswerInvalid         something else answers at the node's address (HTTP 502)
    │   ├── LeaseUnanswered           orchestrator.placement (also a LeaseFailed)
    │   ├── PairingUnreachable        pairing.exchange (also a PairingFailed)
    │   ├── RpcUnreachable            ggml.hello: is the node's RPC server up?
    │   ├── CoordinatorUnreachable    public_swarm.coordinator.client: check the URL and that it runs
    │   ├── CoordinatorAnswerInvalid  public_swarm.coordinator.client: that URL is no hearth coordinator
    │   ├── PublicStreamInvalid       public_swarm.sse: a coordinator's stream too long, malformed or cut
    │   ├── JobNotServed              public_swarm.coordinator.openai_wire: the job failed on every worker (HTTP 502)
    │   ├── FiguresUnreadable         escalation.public_watch: swarm counts or worker page unreadable (shown unknown)
    │   ├── SealedError               tunnel.sealed: same pairing secret on both sides?
    │   ├── DashUnreachable           tui.client: start `hearth serve`, or give `hearth dash --url` (exit 12)
    │   └── DashAnswerInvalid         tui.client: that URL is no `hearth serve` of this version (exit 12)
    ├── LeaseFailed                   orchestrator.placement: a lease the plan needs (HTTP 503)
    │   ├── LeaseUnanswered           the node was silent: check its `hearth node` (also a LinkFailed)
    │   └── LeaseDenied               the node said no: plan without it (also a RefusedByPeer)
    ├── PairingFailed                 pairing.exchange: check the code and try again (exit 7)
    │   ├── PairingUnreachable        the other machine or rendezvous: check --to/--via (also a LinkFailed)
    │   └── NotAnAttempt              never reached the key exchange: the code is still usable
    ├── TunnelUnavailable             tunnel.wireguard: install WireGuard or use the sealed tunnel (exit 8)
    ├── EngineCrashed                 the next request starts a fresh engine (HTTP 503)
    ├── EngineFailed                  the engine could not load or run (the message says why)
    ├── BackendMissing                rebuild llama-cpp-python with RPC (exit 4)
    ├── DownloadFailed                retry the pull; check the hash (exit 5)
    ├── RpcServerFailed               ggml.process: see the node's log
    ├── ForgedNode                    identity: a peer could not prove its key; it is ignored
    ├── PeerNotPaired                 pairing.trust: see `hearth peers` for the names (exit 3)
    ├── RecordError                   discovery.records: a malformed record; the peer is ignored
    ├── LedgerRefused                 public_swarm.ledger: a well-formed operation refused, nothing written (HTTP 409)
    │   ├── InsufficientCredits       earn credits by contributing, or ask for fewer tokens (HTTP 402)
    │   ├── HoldNotFound              no hold has that id (HTTP 404)
    │   └── HoldClosed                the hold was already settled, released or expired
    ├── JobRefused                    public_swarm.coordinator.job_rules: nothing written (HTTP 409)
    │   ├── JobNotFound               no job has that id for you (HTTP 404)
    │   └── JobConflict               not this worker's, already final, or text not continuing the stream
    ├── TrustRefused                  public_swarm.coordinator.trust_rules: nothing written (HTTP 409)
    │   ├── WorkerUnknown             no standing for that worker: it never linked here (HTTP 404)
    │   ├── CheckNotFound             no spot-check has that id (HTTP 404)
    │   └── CheckConflict             that check id is open for another job or worker
    ├── WaitTimedOut                  public_swarm.coordinator.jobs_client: the job runs on; ask again (exit 9)
    ├── ResultGone                    coordinator.jobs_client: fetched before or expired; submit again (exit 11)
    ├── ReceiptCheckFailed            coordinator.receipt_audit: a receipt or charge does not check (exit 10)
    ├── RetentionSettingInvalid       coordinator.retention_rules: fix HEARTH_PROMPT_GRACE_S or HEARTH_RESULT_TTL_S
    ├── PublicNotConsented            escalation.consent: --yes, HEARTH_PUBLIC_OK=1 or answer once (HTTP 403)
    ├── HostNotAllowed                net.http_guard: add the name to HEARTH_ALLOWED_HOSTS (HTTP 421)
    ├── NotFromHere                   server.control_routes: control from this machine, or with the API key (HTTP 403)
    ├── LoadUnderWay                  server.control_routes: another model is loading; wait for it (HTTP 409)
    ├── LoadCancelled                 server.control_routes: the server stopped mid-pull; `hearth pull` resumes
    ├── ControlRefused                tui.control_client: the server said no; its message says what to do
    └── Stopped                       SIGINT/SIGTERM: exit 128 + the signal, not an error
"""

from __future__ import annotations


class HearthError(Exception):
    """Root of every error hearth raises on purpose."""

    http_status: int = 500
    error_type: str = "server_error"
    code: str = "internal_error"
    exit_code: int = 1
    retry_after: int | None = None
    """Seconds a client should wait before trying again (sent as Retry-After)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(HearthError):
    """The request or command line is malformed or out of range."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"
    exit_code = 2


class ContextOverflow(InvalidRequest):
    """The prompt does not fit the model's context window."""

    code = "context_length_exceeded"


class OutOfCapacity(HearthError):
    """Category: not enough room right now (memory, slots, queue). Wait and retry, free memory,
    or let the model reach further (--radius)."""


class RefusedByPeer(HearthError):
    """Category: another machine refused what was asked of it (a lease, a request, a pairing)."""


class LinkFailed(HearthError):
    """Category: a connection to another machine failed or broke (RPC, tunnel). Check that the
    machine is up and reachable, then retry."""


class ModelNotFound(HearthError):
    """No model by that name in the store or the catalogue."""

    http_status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"
    exit_code = 3


class QueueFull(OutOfCapacity):
    """Too many requests are waiting; the client should retry later."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "queue_full"
    retry_after = 2


class TooLarge(InvalidRequest):
    """A request body over the size limit."""

    http_status = 413
    code = "request_too_large"


class Unauthorized(HearthError):
    """Missing or wrong API key."""

    http_status = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class EngineCrashed(HearthError):
    """The engine child process died; the next request starts a fresh one."""

    http_status = 503
    error_type = "server_error"
    code = "engine_crashed"


class EngineFailed(HearthError):
    """The engine could not load a model or run a request."""

    http_status = 500
    error_type = "server_error"
    code = "engine_error"


class BackendMissing(HearthError):
    """llama-cpp-python is missing or was built without the ggml RPC backend."""

    code = "rpc_backend_missing"
    exit_code = 4


class DownloadFailed(HearthError):
    """A model download failed or its hash did not match."""

    code = "download_failed"
    exit_code = 5


class InsecureBind(HearthError):
    """Binding beyond loopback without an API key."""

    code = "insecure_bind"
    exit_code = 2


class Stopped(HearthError):
    """SIGINT or SIGTERM ended a command; the exit code is 128 + the signal's number."""

    def __init__(self, what: str, signum: int) -> None:
        import signal

        super().__init__(f"{what} stopped ({signal.Signals(signum).name}).")
        self.exit_code = 128 + signum


class NodeUnreachable(LinkFailed):
    """A node's agent did not answer a control request: refused, timed out, or the connection broke."""

    http_status = 503
    code = "node_unreachable"


class NodeAnswerInvalid(LinkFailed):
    """A node answered a control request with something that is not hearth's control API."""

    http_status = 502
    code = "bad_node_answer"


class NodeRefused(RefusedByPeer):
    """A node answered a control request with an error body this build has no class for."""

    http_status = 502
    code = "node_refused"

    def __init__(self, message: str, *, status: int, remote_code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.remote_code = remote_code
