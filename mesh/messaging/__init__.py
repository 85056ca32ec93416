"""AMQP between services: publishing, queue names, RPC, guarded calls, events, the outbox."""
__all__ = ["broker", "topology", "health", "guard", "rpc", "handlers", "outbox"]
