"""Running a service: timers, start hooks, per-worker telemetry, `mesh serve`, `mesh up`."""
__all__ = ["lifecycle", "telemetry", "serve", "supervisor"]
