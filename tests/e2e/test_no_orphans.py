"""Nothing outlives its stop: `mesh up` killed outright takes its services with it,
and a service cut off from its broker still ends on SIGTERM within its grace."""
import os
import pathlib
import signal
import subprocess
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from mesh.runtime.serve import STOP_GRACE_SECONDS
from mesh.testing import BrokerProxy
from tests.e2e.conftest import BIN, REPO, RunningMesh

# the 10 s `mesh up` keeps for Ctrl-C: a service drains for its grace at most,
# then ends itself, whether its SIGTERM came from `mesh up` or from the kernel
GONE_WITHIN = STOP_GRACE_SECONDS + 3
SERVICES = ("accounts", "inventory", "orders", "payments", "notifications", "gateway")


def running(pid):
    """Whether `pid` still runs: a zombie (dead, its exit not yet collected) has ended."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # the name may hold spaces


def still_running(pids, seconds):
    """Those of `pids` that still run after `seconds` (sooner when none does)."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def orphans():
    """Note processes a test expects to end; any still running at teardown is
    killed, so a failure does not leave services reconnecting for ever."""
    noted = []
    yield noted.extend
    for pid in noted:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def cut_off(mesh_env):
    """A mesh's environment, and the proxy through which it reaches its broker,
    for the test to cut."""
    env = mesh_env()
    broker = urlsplit(env["AMQP_URI"])
    proxy = BrokerProxy((broker.hostname, broker.port or 5672))
    user = broker.netloc.rpartition("@")[0]
    env["AMQP_URI"] = urlunsplit(broker._replace(netloc=f"{user}@127.0.0.1:{proxy.port}"))
    yield env, proxy
    proxy.close()


def said(mesh, service, *texts):
    """Whether `service` logged a line containing one of `texts`."""
    return any(r.get("service") == service and any(t in r.get("message", "") for t in texts)
               for r in mesh.records())


def test_mesh_up_killed_outright_takes_its_services_with_it(start_mesh, orphans):
    mesh = start_mesh()
    mesh.wait_for("ready:", timeout=30)
    children = mesh.children()
    orphans(children)
    assert sorted(children.values()) == sorted(SERVICES)
    mesh.process.kill()
    mesh.process.wait()
    left = still_running(children, GONE_WITHIN)
    assert left == [], f"still running {GONE_WITHIN} s after `mesh up` was killed: " \
        f"{[children[pid] for pid in left]}"


def test_mesh_up_killed_outright_with_its_broker_gone_leaves_nothing(cut_off, orphans):
    env, proxy = cut_off
    mesh = RunningMesh(env)
    try:
        mesh.wait_for("ready:", timeout=30)
        children = mesh.children()
        orphans(children)
        proxy.block()
        mesh.wait_for("cannot connect to the broker at", timeout=10)  # reconnecting now
        mesh.process.kill()
        mesh.process.wait()
        left = still_running(children, GONE_WITHIN)
        assert left == [], f"still running {GONE_WITHIN} s after `mesh up` was killed: " \
            f"{[children[pid] for pid in left]}"
    finally:
        mesh.kill()


def test_mesh_up_with_its_broker_gone_stops_on_sigterm_and_each_service_ends_itself(
        cut_off, orphans):
    env, proxy = cut_off
    mesh = RunningMesh(env)
    try:
        mesh.wait_for("ready:", timeout=30)
        children = mesh.children()
        orphans(children)
        proxy.block()
        mesh.wait_for("cannot connect to the broker at", timeout=10)
        code, seconds = mesh.stop(signal.SIGTERM, timeout=15)
        assert code == 0 and seconds < 10, (code, seconds, mesh.story())
        assert still_running(children, 0) == []
        # each went by itself within its grace, not by `mesh up`'s SIGKILL at 9 s
        quiet = [name for name in SERVICES if not said(mesh, name, "stopped", "did not stop")]
        assert quiet == [], mesh.story()
    finally:
        mesh.kill()


def test_a_service_cut_off_from_its_broker_stops_on_sigterm_within_its_grace(cut_off):
    env, proxy = cut_off
    # its broker user exists once the set-up ran, as a container's broker-setup does
    setup = subprocess.run([str(BIN / "mesh"), "broker", "setup"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
    assert setup.returncode == 0, setup.stderr
    service = RunningMesh(env, "inventory", command="serve")
    try:
        service.wait_for("inventory started", timeout=30)
        proxy.block()
        service.wait_for("cannot connect to the broker at", timeout=10)
        code, seconds = service.stop(signal.SIGTERM, timeout=STOP_GRACE_SECONDS + 5)
        assert seconds < STOP_GRACE_SECONDS + 1, service.story()
        # nothing to drain (the broker took its messages back with the connection),
        # so it stops cleanly; were anything still stuck, the grace ends it, saying so
        if code == 0:
            assert said(service, "inventory", "inventory stopped"), service.story()
        else:
            assert code == 1, (code, service.story())
            assert said(service, "inventory", f"did not stop within {STOP_GRACE_SECONDS} s")
    finally:
        service.kill()
