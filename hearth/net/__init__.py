"""Network helpers every layer may use: endpoints, ports, byte pumps, the guarded web server."""
