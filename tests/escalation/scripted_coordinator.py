"""A SCRIPTED stand-in for the coordinator's requester routes (contract C1), for tests written
before helper "dispatch" built the real ones: it relays each request to a real `hearth serve`
(the real engine and model generate every token) and adds what the coordinator adds: the price
ceiling check (402), the final usage chunk's cost and `hearth` part, and `GET /v1/models` with a
price. It refuses unsigned requests (401), as the real one bills the signer.

    python -m tests.escalation.scripted_coordinator PORT UPSTREAM_URL DIGEST
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL, PRICE, WORKER = "smollm2-135m", 60, "scripted-worker-0001"


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": code,
                                   "param": None}}, status)


def app(upstream: str, digest: str) -> Starlette:
    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{
            "id": MODEL, "object": "model", "owned_by": "hearth-swarm", "digest": digest, "n_params": 134515008,
            "quantization": "Q8_0", "n_ctx": 2048, "price": PRICE, "workers": 1}]})

    async def complete(request: Request) -> Response:
        if "x-hearth-signature" not in request.headers:
            return error(401, "unsigned_request", "sign it")
        ceiling = request.headers.get("x-hearth-max-price")
        if ceiling is not None and PRICE > int(ceiling):
            return error(402, "price_above_ceiling", f"{MODEL} costs {PRICE} credits per million tokens, above "
                                                     f"your ceiling of {ceiling}.")
        body = json.loads(await request.body())
        if body["model"] not in (MODEL, f"sha256:{digest}"):
            return error(404, "model_not_served", f"No worker serves {body['model']}.")
        body |= {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}}
        client = httpx.AsyncClient(timeout=120)
        upstream_request = client.build_request("POST", upstream + request.url.path, json=body)
        response = await client.send(upstream_request, stream=True)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data: {"):
                        if line:
                            yield (line + "\n\n").encode()
                        continue
                    chunk = json.loads(line[6:])
                    usage = chunk.get("usage")
                    if usage is not None:
                        cost = (usage["prompt_tokens"] + usage["completion_tokens"]) * PRICE
                        chunk["usage"] = usage | {"cost_credits": cost, "price": PRICE}
                        chunk["hearth"] = {"served_by": "public", "job_id": "job-scripted", "workers": [WORKER],
                                           "receipt": ""}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
            finally:
                await response.aclose()
                await client.aclose()

        return StreamingResponse(relay(), media_type="text/event-stream", headers={"X-Hearth-Max-Cost": "0"})

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", complete, methods=["POST"]),
                             Route("/v1/completions", complete, methods=["POST"])])


if __name__ == "__main__":
    port, upstream, digest = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvicorn.run(app(upstream, digest), host="127.0.0.1", port=port, log_level="warning")
