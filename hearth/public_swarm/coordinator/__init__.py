"""The public swarm's coordinator as a service (issue 10): workers register the models they hold
or link over one outbound WebSocket each, requesters see prices and their credits, the operator
grants credits, and jobs wait in a durable queue (not yet reachable over HTTP: the jobs API and
the dispatcher come next).

`wire` holds the HTTP API's paths and messages (pure); `tables`, `migrations/` and `workers` the
worker registry on the ledger's database; `links` the workers' live WebSocket links; `auth` the
signed-request gate; `app` the FastAPI app; `job_rules` and `jobs` the job queue (SKIP LOCKED on
PostgreSQL); `serve` runs it (`hearth coordinator`); `client` is the one typed client, `account`
what `hearth credits` does with it.
"""
