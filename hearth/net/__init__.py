"""Network helpers every layer may use: endpoints (HOST:PORT), base64 for the wire, byte pumps, the
guarded web server. hearth's port numbers live one layer down, in hearth.ports, beside settings."""
