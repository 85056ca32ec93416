"""`mesh up`: one OS process per service, their output merged, crashes restarted.

In text format each line is prefixed with its service's name; in JSON format
every line is one JSON object (the services' own lines pass through as they are).
"""
import ctypes
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from mesh.core.logs import utc_timestamp

__all__ = ["Supervisor", "mesh_ready"]

STOP_TIMEOUT = 9.0  # children get SIGTERM, then SIGKILL: all gone within 10 s
READY_TIMEOUT = 60.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 30.0  # a child up this long starts its backoff afresh


try:
    # looked up here, not in the forked child, where another thread of ours may
    # have held the loader's lock at the fork
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except AttributeError:  # not Linux: a child outlives a `mesh up` killed outright
    _prctl = None
PR_SET_PDEATHSIG = 1


def _die_with(parent):
    """Run in the child between fork and exec: SIGTERM (which drains, then exits
    within STOP_GRACE_SECONDS) once `parent`, `mesh up`, is gone, however it went."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # gone before the signal was asked for
            os._exit(1)


def mesh_ready(url):
    """Whether the gateway at `url` answers /ready 200 with every check ok: it
    answers 200 as soon as it can serve, naming a service with no instance yet
    `no instance`; the mesh is ready once every service it names has one."""
    try:
        with urllib.request.urlopen(url + "/ready", timeout=2) as response:
            return response.status == 200 and \
                set(json.load(response)["checks"].values()) == {"ok"}
    except Exception:  # not listening yet, a 503, a body that is not the probe's
        return False


class Child:
    def __init__(self, name, command):
        self.name, self.command = name, command
        self.process = None
        self.started_at = 0.0
        self.backoff = 1.0
        self.restart_at = None
        self.restarts = 0


class Supervisor:
    def __init__(self, config_path, config, replicas, out=sys.stdout, log_format="text"):
        """`replicas`: `{service: processes}`; replica N of a service that runs
        several is shown as `service.N`."""
        self.config, self.out, self.log_format = config, out, log_format
        self.replicas = replicas
        self.children = [
            Child(f"{name}.{n}" if count > 1 else name,
                  [sys.executable, "-m", "mesh.ops.cli", "serve", name,
                   "--config", os.path.abspath(config_path)] +
                  (["--replica", str(n)] if count > 1 else []))
            for name, count in replicas.items() for n in range(1, count + 1)]
        self.width = max(len(c.name) for c in self.children)
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def say(self, name, line):
        line = line.rstrip()
        if self.log_format == "text":
            line = f"{name:<{self.width}} | {line}"
        elif not line.startswith("{"):  # ours, or a child's before its logging was set up
            line = json.dumps({"timestamp": utc_timestamp(time.time()), "level": "INFO",
                               "logger": "mesh.up" if name == "mesh" else "output",
                               "message": line, "service": name})
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def start(self, child):
        # only ever on the main thread: the parent-death signal comes when the
        # *thread* that forked the child ends, not the process
        # every child knows how many processes each service runs (mesh.data.budget)
        env = dict(os.environ, PYTHONUNBUFFERED="1", MESH_LOG_FORMAT=self.log_format,
                   **{f"REPLICAS_{name.upper()}": str(count)
                      for name, count in self.replicas.items()})
        child.process = subprocess.Popen(
            child.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, text=True, errors="replace",
            start_new_session=True, preexec_fn=functools.partial(_die_with, os.getpid()))
        child.started_at = time.monotonic()
        child.restart_at = None
        threading.Thread(target=self.pump, args=(child, child.process),
                         daemon=True).start()

    def pump(self, child, process):
        for line in process.stdout:
            self.say(child.name, line)

    def watch_ready(self):
        """Print the gateway's URL once /ready answers 200 with every check ok:
        the gateway is ready as soon as its broker answers, the mesh once every
        service it names has an instance too."""
        host = self.config["GATEWAY_HOST"]
        url = f"http://{host}:{self.config['GATEWAY_PORT']}"
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if mesh_ready(url):
                self.say("mesh", f"ready: the gateway is serving on {url} "
                         f"(API under {url}/api/v1)")
                return
            self.stopping.wait(0.3)
        if not self.stopping.is_set():
            self.say("mesh", f"not ready after {READY_TIMEOUT:.0f} s; see {url}/ready")

    def run(self):
        """Supervise until SIGINT or SIGTERM; returns the exit code."""
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        self.say("mesh", "starting " + ", ".join(c.name for c in self.children))
        for child in self.children:
            self.start(child)
        if any(c.name == "gateway" for c in self.children):
            threading.Thread(target=self.watch_ready, daemon=True).start()
        while not self.stopping.wait(0.2):
            for child in self.children:
                self.tend(child)
        return self.shutdown()

    def tend(self, child):
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                self.say("mesh", f"restarting {child.name} (restart {child.restarts})")
                self.start(child)
            return
        code = child.process.poll()
        if code is None:
            return
        if now - child.started_at > STABLE_AFTER:
            child.backoff = 1.0
        self.say("mesh", f"{child.name} exited with code {code}; restarting in "
                 f"{child.backoff:g} s")
        child.restart_at = now + child.backoff
        child.backoff = min(child.backoff * 2, MAX_BACKOFF)

    def shutdown(self):
        self.say("mesh", "stopping")
        running = [c.process for c in self.children
                   if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.say("mesh", "stopped")
        return 0
