"""Start the mesh exactly as `make run` does: `mesh up` from the repository root."""
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from mesh.testing import GatewayClient, free_port, temporary_identities, temporary_vhost

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "admin password"
OPS_SERVICES = ("accounts", "inventory", "orders", "payments", "notifications")


class RunningMesh:
    """A `mesh up` process (or another `mesh` command that runs until stopped,
    such as `mesh serve NAME`) whose output is collected line by line."""

    def __init__(self, env, *args, command="up"):
        self.env = env
        self.base = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        # ``mesh.http("GET", path, token)``, ``mesh.http.token(email, password)``;
        # the gateway may be restarted under it: a connection per request
        self.http = GatewayClient(self.base, keep_alive=False)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(BIN / "mesh"), command, *args], cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    @property
    def output(self):
        return "\n".join(self.lines)

    def records(self):
        """The output's lines as JSON objects (`mesh up` on a pipe writes JSON lines)."""
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def story(self, last=8000, failover=False):
        """The output without access-log lines: what to read when a test fails.
        `failover`: only what a fault leaves (warnings, errors, calls that did not
        end ok, each traceback cut to its last line), long before the output's tail."""
        lines = (line for line in self.lines if "mesh.http.access" not in line)
        if failover:
            lines = filter(None, map(_unusual, lines))
        return "\n".join(lines)[-last:]

    def ops(self, service, path="/metrics"):
        """GET a service's own ops port."""
        port = self.env[f"OPS_PORT_{service.upper()}"]
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)

    def mesh(self, *args, **kwargs):
        """Run another `mesh` command against this mesh."""
        return subprocess.run([str(BIN / "mesh"), *args], cwd=REPO, env=self.env, text=True,
                              capture_output=True, timeout=60, **kwargs)

    def wait_for(self, text, timeout=30):
        """The first output line containing `text`; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None and not self.changed.wait(0.5):
                    raise AssertionError(f"no line with {text!r} in:\n{self.output}")
                self.changed.wait(min(left, 0.5))

    def children(self):
        """pid → service name of the processes `mesh up` runs now."""
        found = {}
        for pid in pathlib.Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children") \
                .read_text().split():
            try:
                argv = pathlib.Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            except FileNotFoundError:
                continue
            if "serve" in argv:
                name = argv[argv.index("serve") + 1]
                if "--replica" in argv:  # one of several: `orders.2`
                    name += "." + argv[argv.index("--replica") + 1]
                found[int(pid)] = name
        return found

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal `mesh up`; returns (exit code, seconds it took)."""
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def kill(self):
        if self.process.poll() is None:
            # its services first: killed alone, `mesh up` would leave them
            # draining for up to 7 s, taking later tests' work meanwhile
            for pid in self.children():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def mesh_env(tmp_path_factory):
    """The environment a user would export before `make run`, on test resources:
    each mesh gets a vhost, broker users and a data directory of its own."""
    with contextlib.ExitStack() as vhosts:
        def make(**extra):
            env = {k: v for k, v in os.environ.items() if not k.startswith(
                ("DATABASE_URL_", "JWT_SECRET", "MESH_", "GATEWAY_", "OPS_", "OTEL_"))}
            env.update({f"OPS_PORT_{name.upper()}": str(free_port())
                        for name in OPS_SERVICES + ("gateway",)})
            uri = vhosts.enter_context(temporary_vhost())
            # as in production: each service its own broker user (docs "Broker identities")
            env.update(vhosts.enter_context(temporary_identities(uri)))
            env.update(AMQP_URI=uri,
                       GATEWAY_PORT=str(free_port()),
                       MESH_DATA_DIR=str(tmp_path_factory.mktemp("mesh-data")),
                       MESH_ADMIN_EMAIL=ADMIN_EMAIL, MESH_ADMIN_PASSWORD=ADMIN_PASSWORD,
                       # every test's client is 127.0.0.1, many logging in a minute
                       AUTH_ADDRESS_RATE_LIMIT="1000/60")
            env.update(extra)
            return env
        yield make


@pytest.fixture(scope="module")
def mesh(mesh_env):
    """One whole mesh for a test module."""
    running = RunningMesh(mesh_env())
    running.wait_for("ready: the gateway is serving on", timeout=30)
    yield running
    running.kill()


@pytest.fixture
def start_mesh(mesh_env):
    running = []

    def start(*args, **extra):
        mesh = RunningMesh(mesh_env(**extra), *args)
        running.append(mesh)
        return mesh

    yield start
    for mesh in running:
        mesh.kill()


def _unusual(line):
    """`line` shortened when it tells of something unusual, else None."""
    try:
        record = json.loads(line)
    except ValueError:
        return line  # not a log record: a crash's own output
    if not isinstance(record, dict) or \
            record.get("level") == "INFO" and record.get("outcome") in (None, "ok"):
        return None
    if isinstance(record.get("exc_info"), str):
        record["exc_info"] = record["exc_info"].strip().splitlines()[-1]
    return json.dumps(record)
