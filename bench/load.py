"""The RPC load: nameko's wire protocol spoken by plain py-amqp, in a process of its own.

``python -m bench.load URI SERVICE.METHOD '{"product_id": 1}' --inflight 50``
keeps that many requests in flight for `--seconds` (after `--warmup`) and prints
one JSON object: calls/s, p50/p99 latency and errors. With `--rate N` it sends N
requests a second instead, whatever the answers' pace (for latency at a fixed load).

One thread, no eventlet, no confirms: the load must cost the machine as little
as possible, and it costs every case alike. Replies come back as nameko sends
them (`{"result", "error"}` to the `reply_to` routing key on the RPC exchange).
"""
import argparse
import json
import sys
import time
import uuid
from urllib.parse import unquote, urlsplit

import amqp

RPC_EXCHANGE = "nameko-rpc"


def connect(uri):
    parts = urlsplit(uri)
    connection = amqp.Connection(
        host=f"{parts.hostname}:{parts.port or 5672}", userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=unquote(parts.path[1:]) if len(parts.path) > 1 else "/")
    connection.connect()
    return connection


class Caller:
    """Requests out, replies in, on one channel; latencies kept per correlation id."""

    def __init__(self, connection, target, kwargs):
        self.channel = connection.channel()
        self.connection = connection
        self.routing_key = target
        self.body = json.dumps({"args": [], "kwargs": kwargs}).encode()
        self.reply_to = f"bench-load-{uuid.uuid4().hex}"
        self.channel.queue_declare(self.reply_to, exclusive=True, auto_delete=True)
        self.channel.queue_bind(self.reply_to, RPC_EXCHANGE, self.reply_to)
        self.channel.basic_consume(self.reply_to, callback=self.on_reply, no_ack=True)
        self.sent = {}
        self.latencies, self.errors, self.first_error = [], 0, None
        self.answered = 0  # every reply, warm-up's included: what the service's CPU did
        self.counting_from = float("inf")

    def send(self):
        correlation_id = uuid.uuid4().hex
        self.sent[correlation_id] = time.perf_counter()
        self.channel.basic_publish(
            amqp.Message(self.body, content_type="application/json",
                         content_encoding="utf-8", reply_to=self.reply_to,
                         correlation_id=correlation_id, delivery_mode=2),
            exchange=RPC_EXCHANGE, routing_key=self.routing_key)

    def on_reply(self, message):
        started = self.sent.pop(message.properties.get("correlation_id"), None)
        if started is None:
            return
        self.answered += 1
        now = time.perf_counter()
        if started < self.counting_from:
            return  # sent during the warm-up
        reply = json.loads(message.body)
        if reply.get("error"):
            self.errors += 1
            self.first_error = self.first_error or reply["error"]
        else:
            self.latencies.append(now - started)

    def drain(self, until):
        try:
            self.connection.drain_events(timeout=max(0.0005, until - time.perf_counter()))
        except TimeoutError:
            pass


def closed_loop(caller, inflight, warmup, seconds):
    """`inflight` requests always outstanding; each reply sends the next."""
    for _ in range(inflight):
        caller.send()
    started = time.perf_counter()
    caller.counting_from = started + warmup
    end = caller.counting_from + seconds
    while time.perf_counter() < end:
        caller.drain(end)
        for _ in range(inflight - len(caller.sent)):
            caller.send()
    return seconds


def open_loop(caller, rate, warmup, seconds):
    """One request every 1/rate seconds, answered or not."""
    interval = 1.0 / rate
    started = time.perf_counter()
    caller.counting_from = started + warmup
    end = caller.counting_from + seconds
    due = started
    while due < end:
        now = time.perf_counter()
        if now >= due:
            caller.send()
            due += interval
        caller.drain(min(due, end))
    deadline = time.perf_counter() + 10  # let the last answers arrive
    while caller.sent and time.perf_counter() < deadline:
        caller.drain(deadline)
    return seconds


def summary(caller, seconds):
    latencies = sorted(caller.latencies)

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2) \
            if latencies else None

    return {"calls_per_s": round(len(latencies) / seconds, 1), "calls": len(latencies),
            "answered": caller.answered,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": caller.errors,
            "first_error": caller.first_error}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("uri")
    parser.add_argument("target", help="SERVICE.METHOD")
    parser.add_argument("kwargs", help="the call's keyword arguments as JSON")
    parser.add_argument("--inflight", type=int, default=50)
    parser.add_argument("--rate", type=float, help="requests per second (open loop)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    connection = connect(args.uri)
    try:
        caller = Caller(connection, args.target, json.loads(args.kwargs))
        if args.rate:
            seconds = open_loop(caller, args.rate, args.warmup, args.seconds)
        else:
            seconds = closed_loop(caller, args.inflight, args.warmup, args.seconds)
        print(json.dumps(summary(caller, seconds)))
    finally:
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
