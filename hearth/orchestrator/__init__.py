"""Scheduling requests onto engines (single machine for now; pooling comes with the household issue)."""
