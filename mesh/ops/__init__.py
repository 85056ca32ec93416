"""What operators run: the `mesh` command, dead letters, status."""
__all__ = ["cli", "dlq", "status"]
