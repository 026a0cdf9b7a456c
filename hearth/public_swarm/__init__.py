"""The credit-priced public swarm (public-radius issue)."""
