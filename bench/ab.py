"""Two checkouts side by side: both meshes up at once and one case's load
alternated between them, so that both meet the same moments of a VM whose speed
moves by a fifth between rounds. Two `make bench` runs minutes apart cannot show
a change of 5%; this can.

``python -m bench.ab OTHER [--case http|rpc|orders] [--rounds 8] [--seconds 5]``

OTHER is another commit's checkout (``git worktree add /tmp/base REV``); the
checkout this runs from is the other side. Each mesh runs on SQLite, in a vhost
and a data directory of its own, started by this checkout's bench (`Mesh`), so
OTHER's `mesh up` must take the same environment. The rounds alternate which
side goes first; the table gives each side's medians (the rate, and the CPU per
unit of each process) and this side's over OTHER's.
"""
from mesh.core.logs import quiet_eventlet_deprecation

quiet_eventlet_deprecation()

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from bench import cases, stores  # noqa: E402
from bench.__main__ import ROOT, Mesh, Processes, code_under_test  # noqa: E402
from mesh.testing import temporary_vhost  # noqa: E402


def medians(results):
    """`{figure: median}` over a side's rounds: the rate and each process's CPU."""
    figures = {key for result in results for key in result
               if key == "per_s" or key.startswith("cpu_ms ")}
    return {key: statistics.median(r[key] for r in results if r.get(key) is not None)
            for key in figures}


def table(label, unit, per, sides):
    """The two sides' medians and this side's over the other's, as text."""
    (other_name, other), (this_name, this) = sides
    rows = [(unit, "per_s")] + [(f"CPU ms per {per}: {key.removeprefix('cpu_ms ')}", key)
                                for key in sorted(set(other) | set(this))
                                if key != "per_s" and (other.get(key) or this.get(key))]
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"{label}: medians", f"  other: {other_name}", f"  this:  {this_name}",
             f"{'':{width}}{'other':>10}{'this':>10}{'this/other':>12}"]
    for name, key in rows:
        a, b = other.get(key), this.get(key)
        ratio = f"{b / a:.3f}" if a and b is not None else "-"
        lines.append(f"{name:{width}}{_figure(a):>10}{_figure(b):>10}{ratio:>12}")
    return "\n".join(lines)


def _figure(value):
    return "-" if value is None else f"{value:g}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.ab")
    parser.add_argument("other", help="the other commit's checkout")
    parser.add_argument("--case", choices=("http", "orders", "rpc"), default="http")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    other = os.path.abspath(args.other)
    if not os.path.isfile(os.path.join(other, "mesh", "ops", "cli.py")):
        sys.exit(f"bench.ab: {other} is not a checkout of the mesh")
    cases.configure(seconds=args.seconds, warmup=1.0)
    names = {"other": code_under_test(other), "this": code_under_test(ROOT)}
    results = {"other": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        started, load = [], {}
        try:
            for side, root in (("other", other), ("this", ROOT)):
                uri = stack.enter_context(temporary_vhost("mesh-bench"))
                os.makedirs(os.path.join(tmp, side))
                processes = Processes(os.path.join(tmp, side), root)
                started.append(processes)
                mesh = Mesh(processes, uri, os.path.join(tmp, side, "data"))
                load[side] = cases.mesh_cases(uri, mesh, stores.Store(mesh))[args.case]
            for number in range(args.rounds):
                for side in ("other", "this") if number % 2 == 0 else ("this", "other"):
                    result = load[side].run(warm=number == 0)
                    if "error" in result:
                        sys.exit(f"bench.ab: {side}'s {load[side].label} failed: "
                                 f"{result['error']}")
                    results[side].append(result)
                    print(f"  round {number + 1}: {side}: {cases.brief(result)}", flush=True)
        finally:
            for processes in started:
                processes.stop_all()
    case = load["this"]
    print(table(f"{case.label}, {args.rounds} rounds of {args.seconds:g} s each, alternated",
                case.unit, case.per,
                [(names["other"], medians(results["other"])),
                 (names["this"], medians(results["this"]))]))


if __name__ == "__main__":
    main()
