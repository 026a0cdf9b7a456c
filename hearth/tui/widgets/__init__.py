"""The dashboard's panels; each draws from `ServeStatus` (or the circle, or events) and nothing else."""
