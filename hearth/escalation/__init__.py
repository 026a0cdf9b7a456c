"""The public radius from the requester's side: the circle first, the public swarm when it cannot
serve (issue 10, item 4). Sits above the orchestrator and public_swarm, which may not import each
other, and below the server and the CLI, which use it as they use the engine pool."""
