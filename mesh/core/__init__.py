"""What every process stands on: settings, the wire codec, logs, traces, metrics."""
__all__ = ["config", "codec", "logs", "tracing", "metrics"]
