"""Model catalogue, content-addressed store, downloads and GGUF facts."""
