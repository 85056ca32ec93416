"""A RabbitMQ cluster of its own on loopback, for one test session.

Each node has its own name, AMQP and distribution ports, data and log
directories and config file (the system config pins 5672); they share the
machine's Erlang cookie (they run as the `rabbitmq` user, as the system node
does) and are joined with `rabbitmqctl join_cluster`. Everything is removed at
the end, and nothing else is touched.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from mesh.testing import free_port


class CtlError(subprocess.CalledProcessError):
    """A failed rabbitmqctl, with what it said: its exit code alone tells little."""

    def __str__(self):
        return f"{super().__str__()}: {self.stderr}"


def _ctl(node, *args, timeout=120):
    done = subprocess.run(["rabbitmqctl", "-q", "-n", node, *args],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise CtlError(done.returncode, done.args, done.stdout,
                       done.stderr.strip() or done.stdout.strip())
    return done.stdout


class RabbitCluster:
    def __init__(self, size=3, prefix="meshtest", settings=None):
        """`settings`: rabbitmq.conf lines every node gets, as a mapping."""
        self.settings = dict(settings or {})
        self.root = tempfile.mkdtemp(prefix="mesh-rabbit-")
        os.chmod(self.root, 0o755)
        # names of this run's own: a node some earlier run left behind cannot stand in
        run = uuid.uuid4().hex[:6]
        self.nodes = [f"{prefix}{run}n{i}@localhost" for i in range(1, size + 1)]
        # the loopback address (127.0.0.2 ...) each node connects to the others from,
        # so that `partition` can tell its distribution traffic from rabbitmqctl's
        self.addresses = {node: f"127.0.0.{i}" for i, node in enumerate(self.nodes, 2)}
        # a vhost of its own: a process left over from another run, retrying an
        # address that one of these nodes now has, cannot take this run's work
        self.vhost = None
        self.ports = {node: free_port() for node in self.nodes}
        self.dist_ports = {node: free_port() for node in self.nodes}
        self.chain = f"mesh-cut-{uuid.uuid4().hex[:8]}"  # iptables rules of its own

    @property
    def uri(self):
        """kombu's failover form: every node, tried in turn."""
        return ";".join(f"pyamqp://guest:guest@127.0.0.1:{self.ports[node]}/{self.vhost}"
                        for node in self.nodes)

    def _dir(self, node):
        return os.path.join(self.root, node.split("@")[0])

    def start_node(self, node):
        base = self._dir(node)
        if not os.path.isdir(base):
            os.makedirs(os.path.join(base, "log"))
            os.makedirs(os.path.join(base, "mnesia"))
            with open(os.path.join(base, "rabbitmq.conf"), "w") as conf:
                conf.write(f"listeners.tcp.default = 127.0.0.1:{self.ports[node]}\n")
                conf.write("".join(f"{key} = {value}\n" for key, value in self.settings.items()))
            shutil.chown(base, "rabbitmq", "rabbitmq")
            for sub in ("log", "mnesia", "rabbitmq.conf"):
                shutil.chown(os.path.join(base, sub), "rabbitmq", "rabbitmq")
        erl = "{" + self.addresses[node].replace(".", ",") + "}"
        env = dict(os.environ, RABBITMQ_NODENAME=node,
                   RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                       f"-kernel inet_dist_connect_options [{{ip,{erl}}}]"),
                   RABBITMQ_NODE_PORT=str(self.ports[node]),
                   RABBITMQ_DIST_PORT=str(self.dist_ports[node]),
                   RABBITMQ_MNESIA_BASE=os.path.join(base, "mnesia"),
                   RABBITMQ_LOG_BASE=os.path.join(base, "log"),
                   RABBITMQ_CONFIG_FILE=os.path.join(base, "rabbitmq.conf"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(base, "enabled_plugins"),
                   RABBITMQ_PID_FILE=os.path.join(base, "pid"))
        subprocess.run(["rabbitmq-server", "-detached"], env=env, check=True,
                       capture_output=True, timeout=60, cwd=self.root)
        deadline = time.monotonic() + 120
        while True:  # the VM answers only once it has registered its name
            try:
                _ctl(node, "await_startup", "--timeout", "120", timeout=150)
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop_node(self, node):
        """The whole node goes (its Erlang VM), as when a machine fails."""
        _ctl(node, "stop")

    def start(self):
        first, *others = self.nodes
        self.start_node(first)
        for node in others:
            self.start_node(node)
            _ctl(node, "stop_app")
            _ctl(node, "join_cluster", first)
            _ctl(node, "start_app")
        self.new_vhost()
        return self

    def new_vhost(self):
        """Start afresh in a vhost of its own: queues declared now lead on the first
        node (the one every client tries first), once every node is running (one
        that paused itself in a minority comes back by itself)."""
        self.await_whole()
        self.vhost = f"mesh-cluster-{uuid.uuid4().hex[:8]}"
        _ctl(self.nodes[0], "add_vhost", self.vhost)
        _ctl(self.nodes[0], "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        return self.vhost

    def mend(self, node):
        """What an operator does for a node that was hung past net_ticktime: it comes
        back running apart from the others (both sides record a partition, and
        pause_minority mends none: every node answers again), so its app is
        restarted, which rejoins it to the others."""
        deadline, failed = time.monotonic() + 60, None
        while True:
            try:
                if self._partitioned(node):
                    break
                failed = None
            except (subprocess.SubprocessError, ValueError, KeyError) as exc:
                failed = exc  # just woken, or paused by pause_minority: asked again
            if time.monotonic() > deadline:
                if failed is not None:  # it never answered: say why, not "never split"
                    raise failed
                return  # it never split (a hang shorter than net_ticktime)
            time.sleep(1)
        _ctl(node, "stop_app")
        _ctl(node, "start_app")

    @staticmethod
    def _partitioned(node):
        """Whether `node` records a partition."""
        return bool(json.loads(_ctl(node, "cluster_status", "--formatter", "json",
                                    timeout=60))["partitions"])

    def await_whole(self, timeout=180):
        """Until every node runs and sees every other one, with no partition
        recorded: a node that was hung or cut off pauses itself once it is back
        (pause_minority), then rejoins by itself."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                views = [json.loads(_ctl(node, "cluster_status", "--formatter", "json",
                                         timeout=60)) for node in self.nodes]
                if all(sorted(view["running_nodes"]) == sorted(self.nodes)
                       and not view["partitions"] for view in views):
                    return
            except (subprocess.SubprocessError, ValueError, KeyError):
                pass  # a node still starting, or paused
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster is not whole after {timeout} s")
            time.sleep(1)

    def pid(self, node):
        """The OS process of the node's Erlang VM (read from its file: rabbitmqctl
        takes seconds on a busy machine, and a fault must strike at once)."""
        with open(os.path.join(self._dir(node), "pid")) as file:
            return int(file.read())

    def partition(self, node):
        """Cut `node` off from the other nodes (their distribution traffic, both
        ways; clients still reach every node) until `heal`."""
        subprocess.run(["iptables", "-N", self.chain], check=True)
        for other in self.nodes:
            if other == node:
                continue
            for source, target in ((node, other), (other, node)):
                for rule in (["-s", self.addresses[source], "--dport", self.dist_ports[target]],
                             ["-d", self.addresses[source], "--sport", self.dist_ports[target]]):
                    subprocess.run(["iptables", "-A", self.chain, "-p", "tcp",
                                    *map(str, rule), "-j", "DROP"], check=True)
        subprocess.run(["iptables", "-I", "INPUT", "-j", self.chain], check=True)

    def heal(self):
        if subprocess.run(["iptables", "-D", "INPUT", "-j", self.chain],
                          capture_output=True).returncode == 0:
            subprocess.run(["iptables", "-F", self.chain], check=True)
            subprocess.run(["iptables", "-X", self.chain], check=True)

    def leader(self, queue, ask):
        """The node leading the quorum queue `queue`, asked of the running node `ask`."""
        for line in _ctl(ask, "list_queues", "-p", self.vhost, "--no-table-headers", "name",
                         "leader").splitlines():
            name, _, leader = line.partition("\t")
            if name == queue:
                return leader.strip()
        raise LookupError(f"no queue {queue} on {ask}")

    def close(self):
        self.heal()
        for node in self.nodes:
            try:
                _ctl(node, "stop", timeout=30)
            except Exception:  # stopped already, or not answering (eventlet's own
                pass  # TimeoutExpired is no stdlib SubprocessError): killed below
            try:  # none may outlive the run under a name the next run takes
                os.kill(self.pid(node), signal.SIGKILL)
            except (OSError, ValueError):
                pass  # gone
        shutil.rmtree(self.root, ignore_errors=True)
