"""PostgreSQL connections: each process's share of its server, from how many
processes the server serves (mesh.data.budget), on the real PostgreSQL."""
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from mesh.data import budget
from mesh.data.db import make_engine
from mesh.testing import load_test_config

SERVICES = ("accounts", "inventory", "orders", "payments", "notifications")


def on_one_server(mesh_config_path, url, **env):
    """The config with every service's database on the server of `url`."""
    base = url.rsplit("/", 1)[0]
    return load_test_config(mesh_config_path, **{
        f"DATABASE_URL_{s.upper()}": url if s == "orders" else f"{base}/{s}_elsewhere"
        for s in SERVICES}, **env)


def server_allows(engine):
    with engine.connect() as connection:
        most = int(connection.execute(text("SHOW max_connections")).scalar())
        kept = int(connection.execute(text("SHOW superuser_reserved_connections")).scalar())
    return most - kept - budget.OPERATOR_MARGIN


@pytest.mark.postgres
def test_each_process_takes_an_equal_share_of_its_server(mesh_config_path, postgres_url):
    engine = make_engine(postgres_url)
    try:
        config = on_one_server(mesh_config_path, postgres_url, REPLICAS_ORDERS=2,
                               REPLICAS_INVENTORY=2)
        assert budget.processes_on(config, postgres_url) == {
            "accounts": 1, "inventory": 2, "orders": 2, "payments": 1, "notifications": 1}
        share = budget.share_of(config, engine)
        assert share == server_allows(engine) // 7
        workers = budget.workers_of(config, "orders", share)
        pool = budget.worker_pool(workers, share)["pool_size"]
        assert pool <= share - budget.OWN and 7 * (pool + budget.OWN) <= server_allows(engine)
        assert pool == workers + budget.EXTRA  # a connection for each worker
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_share_too_small_to_run_on_is_refused(mesh_config_path, postgres_url):
    """However large the server: enough processes on it leave each too few."""
    engine = make_engine(postgres_url)
    try:
        allowed = server_allows(engine)
        crowd = {f"s{i}": "services.orders.service:OrdersService"
                 for i in range(allowed // (budget.MIN_SHARE - 1) + 1)}
        config = {**on_one_server(mesh_config_path, postgres_url), "SERVICES": crowd,
                  **{f"DATABASE_URL_S{i}": postgres_url for i in range(len(crowd))}}
        with pytest.raises(budget.OverBudget) as refused:
            budget.share_of(config, engine)
        assert f"gives the mesh {allowed} connections" in str(refused.value)
        assert f"each of its {len(crowd)} processes" in str(refused.value)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_mesh_serve_says_so_in_one_line(mesh_config_path, postgres_databases, tmp_path):
    url = postgres_databases("orders")
    engine = make_engine(url)
    allowed = server_allows(engine)
    engine.dispose()
    # the most REPLICAS allows, for all five: 80 processes, too many for a server
    # under ~400 connections (PostgreSQL's default is 100, as on the test machines)
    assert allowed // 80 < budget.MIN_SHARE, (
        f"this PostgreSQL gives {allowed} connections: the test needs fewer than 400")
    base = url.rsplit("/", 1)[0]
    env = dict(os.environ, MESH_DATA_DIR=str(tmp_path),
               **{f"REPLICAS_{s.upper()}": "16" for s in SERVICES},
               **{f"DATABASE_URL_{s.upper()}": url if s == "orders" else f"{base}/{s}_x"
                  for s in SERVICES})
    done = subprocess.run([sys.executable, "-m", "mesh.ops.cli", "serve", "orders"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("mesh: orders:")]
    assert len(lines) == 1, done.stderr
    assert "PostgreSQL at 127.0.0.1:5432 gives the mesh" in lines[0]
    assert "orders 16" in lines[0] and "max_connections" in lines[0]
