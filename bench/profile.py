"""Where each order's CPU goes: py-spy on every process of the mesh while the saga
bench's load runs, summed by the package (or mesh module) each sample was in.

``python -m bench.profile [--seconds 20] [--postgres] [--case orders|rpc|http] [--out DIR]``

Starts the mesh as `make bench` does, runs one case's load for `--seconds`
(`orders`: posts orders on 16 connections; `rpc`: calls `inventory.get_product`
with 50 in flight; `http`: wrk on `GET /products/{id}` with 32 connections, as
`make bench` does each), records every service process with `py-spy record --gil -f raw`
(samples of a process while it runs Python; py-spy pauses it for each, so the
posts/s and CPU per order printed beside a profile run a little below `make
bench`'s) (needs py-spy, from the test extra, and root or ptrace rights), then
prints, per process, the share of its samples each package took, by leaf
function, and by the project's own function that asked for the work. The raw
profiles stay in `--out` (flamegraph.pl or speedscope read them), with each
py-spy's own output beside them (`NAME.log`: why it could not attach, if not).
"""
from mesh.core.logs import quiet_eventlet_deprecation

quiet_eventlet_deprecation()

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import collections  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from bench import cases, cpu, stores  # noqa: E402
from bench.__main__ import Mesh, Processes  # noqa: E402
from mesh.testing import temporary_vhost  # noqa: E402

FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*):\d+\)$")


def where(path):
    """A sample's place: the mesh's module (`mesh/messaging/outbox`), the installed
    package (`sqlalchemy`), or the stdlib's module (`stdlib json`); py-spy writes
    paths relative to sys.path."""
    path = path.removesuffix(".py")
    if path.startswith(("mesh/", "services/", "contracts/")):
        return path
    if "/" in path and not path.startswith("/"):
        return path.split("/")[0]
    return "stdlib " + os.path.basename(path) if path != "gateway" else "gateway"


OURS = ("mesh/", "services/", "contracts/", "gateway")


def summary(raw_file, top=12):
    """`(samples, [(package, share)], [(leaf function, share)], [(our function,
    share)])` of a raw profile: by the frame each sample was in (self time), and by
    the deepest frame of the project's own code under it (what asked for the work)."""
    places, leaves, ours, total = (collections.Counter(), collections.Counter(),
                                   collections.Counter(), 0)
    with open(raw_file) as handle:
        for line in handle:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            leaf = FRAME.match(stack.split(";")[-1].strip())
            if not leaf:
                continue
            count = int(count)
            total += count
            places[where(leaf["path"])] += count
            leaves[f"{leaf['function']} ({where(leaf['path'])})"] += count
            for frame in reversed(stack.split(";")):
                match = FRAME.match(frame.strip())
                if match and where(match["path"]).startswith(OURS):
                    ours[f"{match['function']} ({where(match['path'])})"] += count
                    break
            else:
                ours["(outside the project's code)"] += count
    share = lambda counter: [(name, n / total) for name, n in counter.most_common(top)]  # noqa: E731
    return total, share(places), share(leaves), share(ours)


def mesh_processes(mesh):
    """`{service name: pid}` of the services `mesh up` started (as `cpu` names them)."""
    return {role.removeprefix("mesh "): pid
            for pid, (role, _) in cpu.sample(mesh.system).items()
            if role.startswith("mesh ") and role != "mesh supervisor"}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--case", choices=("orders", "rpc", "http"), default="orders",
                        help="whose load: POST /orders, inventory.get_product, or the "
                        "gateway's GET /products/{id}")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if spy is None:
        sys.exit("bench.profile: needs py-spy (pip install py-spy)")
    out = args.out or tempfile.mkdtemp(prefix="mesh-profile-")
    os.makedirs(out, exist_ok=True)
    with temporary_vhost("mesh-profile") as uri, tempfile.TemporaryDirectory() as tmp, \
            (stores.postgres_databases() if args.postgres else _nothing()) as databases:
        processes = Processes(tmp)
        try:
            mesh = Mesh(processes, uri, os.path.join(tmp, "data"), databases)
            loads = cases.mesh_cases(uri, mesh, stores.Store(mesh))
            orders = loads["orders"]
            orders.post(3)  # warm
            pids = mesh_processes(mesh)
            spies = {name: subprocess.Popen(
                [spy, "record", "--gil", "-f", "raw", "-r", "200",
                 "-d", str(int(args.seconds)), "-p", str(pid),
                 "-o", os.path.join(out, f"{name}.raw")],
                stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(out, f"{name}.log"), "w"))
                for name, pid in pids.items()}
            # each case counts the mesh's CPU per unit of work as `make bench` does
            if args.case == "rpc":
                case = loads["rpc"]
                cases.configure(args.seconds, 0.3)  # what `Rpc.run(warm=False)` warms for
                got = case.run(warm=False)
            elif args.case == "http":
                case = loads["http"]
                cases.configure(args.seconds, 0)
                got = case.run(warm=False)
            else:
                case, last = orders, orders.store.last_order_id()
                before = cpu.sample(mesh.system)
                got = orders.post(args.seconds)
                got.update(cases.cpu_per(before, cpu.sample(mesh.system),
                                         len(orders.store.settled_after(last))))
            if "error" in got:
                sys.exit(f"bench.profile: the {args.case} load failed: {got['error']}")
            for process in spies.values():
                process.wait(args.seconds + 60)
        finally:
            processes.stop_all()
    rate = "posts/s answered" if case is orders else case.unit
    print(f"{got['per_s']} {rate} over {args.seconds:g} s; CPU ms per {case.per}: " +
          ", ".join(f"{key.removeprefix('cpu_ms ')} {ms:g}" for key, ms in got.items()
                    if key.startswith("cpu_ms ") and ms))
    for name in pids:
        raw = os.path.join(out, f"{name}.raw")
        if not os.path.exists(raw):
            print(f"\n{name}: no profile (py-spy could not attach)")
            continue
        total, places, leaves, ours = summary(raw)
        print(f"\n{name}: {total} samples holding the GIL")
        print("  by package: " + ", ".join(f"{place} {share:.0%}" for place, share in places))
        print("  by function: " + ", ".join(f"{leaf} {share:.0%}" for leaf, share in leaves[:8]))
        print("  by the project's code that asked: " + ", ".join(
            f"{frame} {share:.0%}" for frame, share in ours[:10]))
    print(f"\nraw profiles in {out}")


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
