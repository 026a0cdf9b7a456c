"""hearth's error tree.

Every error says what to do next. The CLI turns them into exit codes, the HTTP layer into
OpenAI-shaped bodies, both from the typed fields here (never by parsing message text).
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


class ModelNotFound(HearthError):
    """No model by that name in the store or the catalogue."""

    http_status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"
    exit_code = 3


class QueueFull(HearthError):
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


class NodeUnreachable(HearthError):
    """A node's agent did not answer a control request: refused, timed out, or the connection broke."""

    http_status = 503
    code = "node_unreachable"


class NodeAnswerInvalid(HearthError):
    """A node answered a control request with something that is not hearth's control API."""

    http_status = 502
    code = "bad_node_answer"


class NodeRefused(HearthError):
    """A node answered a control request with an error body this build has no class for."""

    http_status = 502
    code = "node_refused"

    def __init__(self, message: str, *, status: int, remote_code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.remote_code = remote_code
