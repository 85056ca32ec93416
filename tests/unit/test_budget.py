"""How many workers a process runs, against its PostgreSQL share (mesh.data.budget)."""
from mesh.data import budget
from mesh.data.db import make_engine
from mesh.runtime.serve import container_config
from mesh.testing import load_test_config


def test_a_process_runs_no_more_workers_than_its_share_gives_connections_to():
    config = {"WORKERS": {"orders": 50}}
    assert budget.workers_of(config, "orders") == 50  # SQLite: no share
    assert budget.workers_of(config, "inventory") == budget.DEFAULT_WORKERS
    assert budget.workers_of(config, "orders", share=100) == 50
    # 13 connections: the relay's 2 and the pruner's 1, 2 for probes and gauges
    assert budget.workers_of(config, "orders", share=13) == 8
    assert budget.worker_pool(8, share=13)["pool_size"] == 8 + budget.EXTRA
    assert budget.workers_of(config, "orders", share=budget.MIN_SHARE) == 1


def test_the_container_takes_as_many_messages_ahead_as_it_runs_workers(mesh_config_path):
    config = load_test_config(mesh_config_path)
    assert container_config(config, "orders")["max_workers"] == 50
    assert container_config(config, "orders", share=13)["max_workers"] == 8


def test_a_sqlite_pool_keeps_a_connection_for_each_worker_and_never_makes_one_wait(
        tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/pool.sqlite", pool=budget.worker_pool(50),
                         pool_timeout=1)
    try:
        assert engine.pool.size() == 50 + budget.EXTRA
        # more than the pool keeps, at once (the file's lock is re-entrant for one
        # green thread): none waits in the pool, where it would time out
        held = [engine.connect() for _ in range(60)]
        for connection in held:
            connection.close()
    finally:
        engine.dispose()
