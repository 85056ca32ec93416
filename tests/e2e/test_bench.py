"""`make bench` still runs every case (a smoke run: short, one round, figures unchecked),
and `bench.ab` still compares two checkouts."""
import json
import os
import subprocess
import sys


def test_every_bench_case_runs(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["cases"]) == {
        "raw", "stock_echo", "stock_rpc", "mesh_rpc", "stock_http", "mesh_http_product",
        "mesh_http_order", "orders_sqlite", "orders_postgresql"}
    for key, case in report["cases"].items():
        assert case["per_s"], key
    for backend in ("sqlite", "postgresql"):
        assert report["event_latency"][backend]["events"] > 0, backend
        assert report["event_latency"][f"{backend}, paced for 500 events/s"]["events"] > 0, backend
    for key in ("orders_sqlite", "orders_postgresql"):  # where each order's CPU went
        case = report["cases"][key]
        assert case["cpu_ms mesh orders"] > 0 and case["cpu_ms broker"] > 0, case
        assert case["cpu_ms everything"] >= case["cpu_ms mesh (all)"] > 0, case
    # and each mesh call's and request's, by the process that spent it
    assert report["cases"]["mesh_rpc"]["cpu_ms mesh inventory"] > 0
    for key in ("mesh_http_product", "mesh_http_order"):
        assert report["cases"][key]["cpu_ms mesh gateway"] > 0, key
    # and the yardsticks' own, so that the mesh reads against them per CPU second too
    assert report["cases"]["raw"]["cpu_ms raw responder"] > 0
    for key in ("stock_echo", "stock_rpc"):
        assert report["cases"][key]["cpu_ms stock service"] > 0, key
    for role in ("stock gateway", "stock service"):  # the route and the RPC it makes
        assert report["cases"]["stock_http"][f"cpu_ms {role}"] > 0, role
    for name in ("mesh_rpc_vs_stock_rpc_per_cpu", "mesh_rpc_vs_raw_per_cpu",
                 "mesh_http_product_vs_stock_http_per_cpu"):
        assert report["ratios"][name] > 0, name
    assert report["ratios"]["mesh_orders_sqlite_vs_raw"] > 0
    assert "the machine now: raw py-amqp" in run.stdout
    assert f"the code: {report['code']}" in run.stdout  # the tree and commit it ran


def test_two_checkouts_run_side_by_side():
    # this checkout on both sides: two meshes up at once, the rounds alternated
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, "-m", "bench.ab", root, "--rounds", "2",
                          "--seconds", "0.5"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rounds = [line.split(":")[0:2] for line in run.stdout.splitlines()
              if line.startswith("  round ")]
    assert rounds == [["  round 1", " other"], ["  round 1", " this"],
                      ["  round 2", " this"], ["  round 2", " other"]]
    row = next(line for line in run.stdout.splitlines()
               if line.startswith("CPU ms per request: mesh gateway"))
    other, this, ratio = (float(figure) for figure in row.split()[-3:])
    assert other > 0 and this > 0 and abs(ratio - this / other) < 0.002
