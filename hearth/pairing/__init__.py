"""Pairing by short code (trusted-radius issue)."""
