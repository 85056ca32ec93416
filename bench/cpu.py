"""CPU seconds the processes behind a figure spent, read from /proc: the system
under test (every process of the mesh, each service by name and `mesh up` itself
as `supervisor`; or a yardstick's processes), the RabbitMQ node and PostgreSQL,
so a case can say where each call's or order's CPU went. The load generators
(wrk, bench.load) are left out: they cost every case alike."""
import collections
import os

TICKS = os.sysconf("SC_CLK_TCK")
MESH = "mesh"  # the system whose processes are told apart by the service they serve
NOT_OWN = ("broker", "database")  # the roles every system shares
OWN = "own"  # spent_between's figure for everything but NOT_OWN


def _stat(pid):
    """(parent pid, CPU seconds) of `pid`, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _cluster_test_node(pid):
    """Whether `pid` is a node of tests/cluster's own (RABBITMQ_NODENAME=meshtest...)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return b"RABBITMQ_NODENAME=meshtest" in handle.read()
    except OSError:
        return False


def _role(pid, argv, systems):
    """Whose CPU `pid` spends: a mesh service's, the supervisor's, a yardstick's (by
    its name in `systems`), the broker's, the database's, or nobody the bench
    measures (None)."""
    argv = argv or [""]  # a process that ended meanwhile
    system = systems.get(pid)
    if system == MESH:
        if "serve" in argv[:-1]:
            return f"mesh {argv[argv.index('serve') + 1]}"
        return "mesh supervisor"
    if system:
        return system
    name = os.path.basename(argv[0]) if argv and argv[0] else ""
    if name == "beam.smp" and "rabbit" in argv and not _cluster_test_node(pid):
        return "broker"
    if name.startswith("postgres") or argv[0].startswith("postgres:"):
        return "database"
    return None


def sample(system):
    """`{pid: (role, CPU seconds so far)}` of every process the bench measures:
    those of `system` (`{pid: name}`, each with its descendants; name one MESH
    to have its processes told apart by service), the broker and the database."""
    stats = {int(pid): _stat(pid) for pid in os.listdir("/proc") if pid.isdigit()}
    stats = {pid: stat for pid, stat in stats.items() if stat}
    systems, grew = dict(system), True
    while grew:  # and their descendants (mesh up's services)
        grown = {pid: systems[parent] for pid, (parent, _) in stats.items()
                 if parent in systems and pid not in systems}
        grew = bool(grown)
        systems.update(grown)
    sampled = {}
    for pid, (_, seconds) in stats.items():
        role = _role(pid, _cmdline(pid), systems)
        if role:
            sampled[pid] = (role, seconds)
    return sampled


def spent_between(before, after, per):
    """Milliseconds of CPU per unit (`per` units done between the samples), by role,
    with the mesh's and everything's sums. Only processes alive at both samples
    count (one that started or ended between them is left out, not half-counted);
    "everything" is what those roles spent on this machine, the load left out."""
    roles = collections.Counter()
    for pid, (role, seconds) in after.items():
        if pid in before and before[pid][0] == role:
            roles[role] += max(seconds - before[pid][1], 0.0)
    if not per:
        return {}
    figures = {role: round(seconds / per * 1000, 2) for role, seconds in sorted(roles.items())}
    mesh = sum(seconds for role, seconds in roles.items() if role.startswith("mesh "))
    if mesh:
        figures["mesh (all)"] = round(mesh / per * 1000, 2)
    figures["everything"] = round(sum(roles.values()) / per * 1000, 2)
    # what the system under test spent itself, summed before rounding (a raw
    # responder's call costs about a tenth of a millisecond)
    own = sum(seconds for role, seconds in roles.items() if role not in NOT_OWN)
    figures[OWN] = round(own / per * 1000, 5)
    return figures
