"""llama.cpp's ggml as hearth drives it: the native library, RPC server children, the RPC handshake."""
