"""The node control API: its messages and its typed client, shared by the agent and its callers."""
