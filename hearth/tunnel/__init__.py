"""Encrypted, authenticated tunnels that carry lease traffic between household machines."""
