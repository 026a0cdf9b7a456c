"""The node control API: its paths and messages (wire), its refusals (errors) and its typed
client (client), shared by the agent that serves it and the orchestrators that call it."""
