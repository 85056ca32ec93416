"""The bench's cases (each run in a process of its own), and the report they make."""
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time

from bench import cpu

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(HERE, "wrk.lua")
RPC_INFLIGHT = 50
HTTP_CONNECTIONS = 32
ORDER_CONNECTIONS = 16
EVENT_RATE = 20  # orders a second while event latency is measured below saturation
EVENTS_PER_S = 500  # and the events a second it is measured at too (issue #22)
TIMING = {"seconds": 3.0, "warmup": 1.0}


def configure(seconds, warmup):
    TIMING.update(seconds=seconds, warmup=warmup)


def order_body(product_id):
    return {"items": [{"product_id": product_id, "quantity": 1}],
            "payment": {"card_token": "tok_bench"}}


def _percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else None


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


class Rpc:
    """`RPC_INFLIGHT` calls always in flight from `bench.load`, and the CPU per call
    of `system` (`{pid: name}` of the processes that answer, as `cpu.sample`
    takes it; the warm-up's calls and CPU included in both, and the system's idle
    CPU while the load process starts and stops)."""

    unit, per = "calls/s", "call"  # its rate, and the unit of work its CPU is counted by

    def __init__(self, key, label, uri, target, kwargs, system):
        self.key, self.label, self.system = key, label, system
        self.command = [sys.executable, "-m", "bench.load", uri, target, json.dumps(kwargs),
                        "--inflight", str(RPC_INFLIGHT)]

    def run(self, warm):
        warmup = TIMING["warmup"] if warm else min(0.3, TIMING["warmup"])
        before = cpu.sample(self.system)
        out = subprocess.run(self.command + ["--warmup", str(warmup), "--seconds",
                                             str(TIMING["seconds"])],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            return {"error": out.stderr.strip()[-500:]}
        result = json.loads(out.stdout)
        figures = {"per_s": result["calls_per_s"], "p50_ms": result["p50_ms"],
                   "p99_ms": result["p99_ms"]}
        figures.update(cpu_per(before, cpu.sample(self.system), result["answered"]))
        if result["errors"] or not result["calls"]:
            figures["error"] = f"{result['errors']} error(s): {result['first_error']}"
        return figures


def wrk(url, connections, seconds, headers=(), env=None):
    """wrk's figures for `url` (one thread, `connections` connections)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "-s", WRK_SCRIPT]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run(command + [url], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})})
    lines = [line for line in out.stdout.splitlines() if line.startswith("BENCH ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed: {out.stderr.strip()[-500:]}")
    result = json.loads(lines[-1][len("BENCH "):])
    return {"per_s": round(result["requests"] / (result["duration_us"] / 1e6), 1),
            "p50_ms": round(result["p50_us"] / 1000, 2),
            "p99_ms": round(result["p99_us"] / 1000, 2),
            "requests": result["requests"], "non_2xx": result["non_2xx"],
            "socket_errors": result["socket_errors"]}


def cpu_per(before, after, units):
    """`{"cpu_ms ROLE": ms}`: the CPU each role spent per unit between the samples,
    and `own_cpu_us`, what the system under test spent itself (`cpu.OWN`), in
    microseconds: a raw responder's call costs about a tenth of a millisecond, which
    the medians' two decimals would cut to a few percent."""
    spent = cpu.spent_between(before, after, units)
    own = spent.pop(cpu.OWN, None)  # not a process's: kept out of the printed roles
    return {**{f"cpu_ms {role}": ms for role, ms in spent.items()},
            "own_cpu_us": None if own is None else round(own * 1000, 1)}


class Http:
    """wrk with `HTTP_CONNECTIONS` connections on one GET route, and the CPU per
    request of `system` (as `Rpc` takes it)."""

    unit, per = "req/s", "request"

    def __init__(self, key, label, url, system, token=None):
        self.key, self.label, self.url, self.system = key, label, url, system
        self.headers = [f"Authorization: Bearer {token}"] if token else []

    def run(self, warm):
        try:
            if warm:
                wrk(self.url, HTTP_CONNECTIONS, TIMING["warmup"], self.headers)
            before = cpu.sample(self.system)
            figures = wrk(self.url, HTTP_CONNECTIONS, TIMING["seconds"], self.headers)
        except RuntimeError as exc:
            return {"error": str(exc)}
        figures.update(cpu_per(before, cpu.sample(self.system), figures["requests"]))
        if figures["non_2xx"] or figures["socket_errors"] or not figures["requests"]:
            figures["error"] = (f"{figures['non_2xx']} non-2xx answer(s), "
                                f"{figures['socket_errors']} socket error(s)")
        return figures


class Orders:
    """`POST /orders` from one customer on `ORDER_CONNECTIONS` connections, counted
    once the orders it made have all settled: orders confirmed per second, end to
    end, and each order's settle time (`updated_at - created_at`, as orders wrote them)."""

    unit, per = "orders/s", "order"

    def __init__(self, key, label, mesh, store):
        self.key, self.label, self.store = key, label, store
        self.system = mesh.system
        self.url = f"{mesh.api}/orders"
        self.headers = [f"Authorization: Bearer {mesh.customer}"]
        self.env = {"BENCH_METHOD": "POST",
                    "BENCH_BODY": json.dumps(order_body(mesh.product_id))}

    def post(self, seconds):
        return wrk(self.url, ORDER_CONNECTIONS, seconds, self.headers, self.env)

    def run(self, warm):
        try:
            if warm:
                warmed_from = self.store.last_order_id()
                self.post(TIMING["warmup"])
                self.store.settled_after(warmed_from)
            last = self.store.last_order_id()
            before = cpu.sample(self.system)
            posted = self.post(TIMING["seconds"])
            rows = self.store.settled_after(last)
            after = cpu.sample(self.system)
        except RuntimeError as exc:
            return {"error": str(exc)}
        confirmed = [row for row in rows if row.status == "confirmed"]
        figures = {"posted_per_s": posted["per_s"], "post_p50_ms": posted["p50_ms"],
                   "post_p99_ms": posted["p99_ms"], "orders": len(rows),
                   "confirmed": len(confirmed)}
        if confirmed:
            span = (max(r.updated_at for r in confirmed) -
                    min(r.created_at for r in confirmed)).total_seconds()
            settle = [(r.updated_at - r.created_at).total_seconds() for r in confirmed]
            figures.update(per_s=round(len(confirmed) / max(span, 1e-3), 1),
                           p50_ms=_ms(_percentile(settle, 0.5)),
                           p99_ms=_ms(_percentile(settle, 0.99)))
            # every order's CPU, wherever it went: the posts' and settling's together
            figures.update(cpu_per(before, after, len(rows)))
        if len(confirmed) != len(rows) or not rows or posted["non_2xx"] or \
                posted["socket_errors"]:
            figures["error"] = (f"{len(rows) - len(confirmed)} of {len(rows)} order(s) not "
                                f"confirmed, {posted['non_2xx']} non-2xx answer(s)")
        return figures


def mesh_cases(uri, mesh, store):
    """The mesh's three loads on SQLite, by the names `bench.profile` and `bench.ab`
    take them: `rpc` (inventory.get_product), `http` (GET /products/{id}), `orders`."""
    return {
        "rpc": Rpc("mesh_rpc", "mesh: inventory.get_product", uri, "inventory.get_product",
                   {"product_id": mesh.product_id}, mesh.system),
        "http": Http("mesh_http_product", "mesh gateway: GET /products/{id} (bearer)",
                     f"{mesh.api}/products/{mesh.product_id}", mesh.system, mesh.customer),
        "orders": Orders("orders_sqlite", "mesh: POST /orders to confirmed (SQLite)", mesh,
                         store),
    }


def plan(uri, stock_url, mesh, store, yardsticks):
    """Every case against the yardsticks (`{"raw" | "stock" | "stock_gateway": pid}`)
    and the mesh on SQLite, in the order run."""
    product = {"product_id": mesh.product_id}
    raw = {yardsticks["raw"]: "raw responder"}
    stock = {yardsticks["stock"]: "stock service"}
    mine = mesh_cases(uri, mesh, store)
    return [
        Rpc("raw", "raw py-amqp request/reply (the limit)", uri, "raw.echo", product, raw),
        Rpc("stock_echo", "stock nameko: echo", uri, "stock.echo", product, stock),
        Rpc("stock_rpc", "stock nameko: get_product (SQLite)", uri, "stock.get_product",
            {"product_id": 1}, stock),
        mine["rpc"],
        Http("stock_http", "stock gateway: GET /products/{id}", stock_url,
             {yardsticks["stock_gateway"]: "stock gateway", **stock}),
        mine["http"],
        Http("mesh_http_order", "mesh gateway: GET /orders/{id} (bearer)",
             f"{mesh.api}/orders/{mesh.order_id}", mesh.system, mesh.customer),
        mine["orders"],
    ]


def event_latency(uri, mesh, store, rate=EVENT_RATE):
    """Outbox row to handler's inbox row, for every event of orders created at `rate`
    a second by RPC (open loop, whatever the saga's pace)."""
    since = dt.datetime.now(dt.timezone.utc)
    last = store.last_order_id()
    kwargs = {"user_id": mesh.customer_id, "items": order_body(mesh.product_id)["items"],
              "payment": {"card_token": "tok_bench"}, "idempotency_key": None}
    out = subprocess.run([sys.executable, "-m", "bench.load", uri, "orders.create_order",
                          json.dumps(kwargs), "--rate", str(rate), "--warmup", "0",
                          "--seconds", str(TIMING["seconds"])],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-500:]}
    store.settled_after(last)
    time.sleep(0.5)  # the last handlers (notifications, inventory's commit) finish
    latencies, recorded = store.event_latencies(since)
    # the rate the services really wrote events at: from the first to the last
    # (a saga that fell behind spreads them wider than the load's seconds)
    times = sorted(recorded.values())
    span = (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0
    return {"rate_orders_per_s": rate, "events": len(latencies),
            "events_per_s": round(len(times) / span, 1) if span else None,
            "events_per_order": round(len(times) / max(rate * TIMING["seconds"], 1), 2),
            "p50_ms": _ms(_percentile(latencies, 0.5)),
            "p99_ms": _ms(_percentile(latencies, 0.99)),
            **({} if latencies else {"error": "no event was handled"})}


def event_latencies(uri, mesh, store, backend):
    """`event_latency` below saturation, then at EVENTS_PER_S events a second (the
    orders' rate from the events each order made in the first run)."""
    below = event_latency(uri, mesh, store)
    figures = {backend: below}
    per_order = below.get("events_per_order")
    figures[f"{backend}, paced for {EVENTS_PER_S} events/s"] = (
        event_latency(uri, mesh, store, rate=round(EVENTS_PER_S / per_order, 1))
        if per_order else {"error": "no events per order to pace by"})
    return figures


def brief(result):
    if result.get("error"):
        return f"ERROR {result['error']}"
    return f"{result.get('per_s')}/s p50 {result.get('p50_ms')} ms p99 {result.get('p99_ms')} ms"


def _median(rounds, field):
    values = [r[field] for r in rounds if r.get(field) is not None]
    return round(statistics.median(values), 2) if values else None


def report(results, events, targets, labels):
    """Medians per case, the ratios, and whether each target is met."""
    cases = {}
    for key, rounds in results.items():
        fields = sorted({f for r in rounds for f, v in r.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)})
        label, unit, per = labels[key]
        cases[key] = {"label": label, "unit": unit, "per": per,
                      **{f: _median(rounds, f) for f in fields},
                      "rounds": rounds}

    def ratio(a, b, field="per_s", places=2):
        x, y = cases.get(a, {}).get(field), cases.get(b, {}).get(field)
        return round(x / y, places) if x and y else None

    def per_cpu(a, b):  # a's units of work per CPU second of its own processes over b's
        x, y = cases.get(a, {}).get("own_cpu_us"), cases.get(b, {}).get("own_cpu_us")
        return round(y / x, 2) if x and y else None

    def spread(key):  # p99 over p50, of the same case
        x, y = cases.get(key, {}).get("p99_ms"), cases.get(key, {}).get("p50_ms")
        return round(x / y, 2) if x and y else None

    ratios = {"mesh_orders_sqlite_vs_raw": ratio("orders_sqlite", "raw", places=4),
              "mesh_orders_postgresql_vs_raw": ratio("orders_postgresql", "raw", places=4),
              "mesh_rpc_vs_stock_rpc": ratio("mesh_rpc", "stock_rpc"),
              "mesh_rpc_vs_raw": ratio("mesh_rpc", "raw"),
              "stock_rpc_vs_raw": ratio("stock_rpc", "raw"),
              "mesh_http_product_vs_stock_http": ratio("mesh_http_product", "stock_http"),
              "mesh_http_order_vs_stock_http": ratio("mesh_http_order", "stock_http"),
              # the same, per CPU second their own processes spent (the broker and
              # the database left out); printed, not targets
              "mesh_rpc_vs_stock_rpc_per_cpu": per_cpu("mesh_rpc", "stock_rpc"),
              "mesh_rpc_vs_raw_per_cpu": per_cpu("mesh_rpc", "raw"),
              "mesh_http_product_vs_stock_http_per_cpu": per_cpu("mesh_http_product",
                                                                 "stock_http")}

    ratios.update({"mesh_http_product_p99_vs_p50": spread("mesh_http_product"),
                   "orders_sqlite_settle_p99_vs_p50": spread("orders_sqlite")})
    # (what it says, the ratio, its target, whether the ratio must reach or stay under it)
    checks = [
        ("mesh RPC >= {}x raw py-amqp", "mesh_rpc_vs_raw", "rpc_vs_raw", True),
        ("mesh RPC >= {}x stock nameko", "mesh_rpc_vs_stock_rpc", "rpc_vs_stock", True),
        ("mesh GET /products/{{id}} >= {}x stock gateway", "mesh_http_product_vs_stock_http",
         "http_vs_stock", True),
        ("mesh GET /products/{{id}} p99 <= {}x its p50", "mesh_http_product_p99_vs_p50",
         "http_p99_vs_p50", False),
        ("orders/s (SQLite) >= {}x the raw rate", "mesh_orders_sqlite_vs_raw",
         "orders_vs_raw", True),
        ("saga settle p99 <= {}x its p50 (SQLite)", "orders_sqlite_settle_p99_vs_p50",
         "settle_p99_vs_p50", False),
    ]
    met = {said.format(targets[target]): ratios[ratio] is not None and (
        ratios[ratio] >= targets[target] if reach else ratios[ratio] <= targets[target])
        for said, ratio, target, reach in checks}
    return {"cases": cases, "ratios": ratios, "event_latency": events, "targets": met}


def render(report):
    raw = report["cases"].get("raw", {}).get("per_s")
    lines = [f"the machine now: raw py-amqp request/reply {raw or 0:,.0f} calls/s "
             "(read every figure against it)",
             *([f"the code: {report['code']}"] if report.get("code") else []), "",
             f"{'case':48} {'figure':>14} {'p50 ms':>8} {'p99 ms':>8}"]
    for case in report["cases"].values():
        figure = f"{case.get('per_s') or 0:,.0f} {case['unit']}"
        lines.append(f"{case['label']:48} {figure:>14} {case.get('p50_ms') or '-':>8} "
                     f"{case.get('p99_ms') or '-':>8}")
        if "posted_per_s" in case:
            lines.append(f"{'  (POSTs answered; p50/p99 above: settle time)':48} "
                         f"{case['posted_per_s']:>8,.0f} req/s {case['post_p50_ms']:>8} "
                         f"{case['post_p99_ms']:>8}")
        cpu_ms = {key.removeprefix("cpu_ms "): value for key, value in case.items()
                  if key.startswith("cpu_ms ")}
        if cpu_ms:
            lines.append(f"  CPU ms per {case['per']}: " + ", ".join(
                f"{role} {value:g}" for role, value in cpu_ms.items() if value))
    lines.append("")
    for backend, figures in report["event_latency"].items():
        if figures.get("error"):
            lines.append(f"event latency ({backend}): ERROR {figures['error']}")
            continue
        lines.append(f"event latency, outbox row to handler ({backend}: "
                     f"{figures.get('rate_orders_per_s')} orders/s, "
                     f"{figures.get('events_per_s')} events/s): "
                     f"p50 {figures.get('p50_ms')} ms, p99 {figures.get('p99_ms')} ms "
                     f"over {figures.get('events')} deliveries")
    lines.append("")
    for name, value in report["ratios"].items():
        lines.append(f"{name:40} {value if value is not None else '-'}")
    lines.append("")
    for target, ok in report["targets"].items():
        lines.append(f"[{'met' if ok else 'NOT met'}] {target}")
    return "\n".join(lines)
