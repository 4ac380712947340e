"""Operating Crucible: health checks, metrics and structured logs."""
