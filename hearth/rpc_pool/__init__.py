"""Leasing ggml RPC servers on household nodes (household-pool issue)."""
