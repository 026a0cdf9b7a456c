"""mDNS discovery of household nodes (household-pool issue)."""
