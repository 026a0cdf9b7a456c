"""The local OpenAI- and Ollama-compatible HTTP endpoint."""
