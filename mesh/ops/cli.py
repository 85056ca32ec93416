"""The `mesh` command: up, serve, migrate (and revision, downgrade, current,
history), status, call, shell, dlq, trace, new, broker setup.

Imports stay inside each command: `serve` must apply eventlet's monkey patch
before nameko, kombu or the database drivers are imported.
"""
import argparse
import os
import sys

__all__ = ["main"]


def _load(args):
    from mesh.core.config import ConfigError, load_config
    from mesh.messaging.tls import use_tls

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.exit(f"mesh: {exc}")
    use_tls(config)  # for the platform's own connections; nameko's read AMQP_SSL
    return config


def _names(args, config):
    names = list(config["SERVICES"])
    if getattr(args, "only", None):
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in config["SERVICES"]]
        if unknown or not names:
            sys.exit(f"mesh: --only: unknown service(s) {', '.join(unknown) or '(none)'}; "
                     f"known: {', '.join(config['SERVICES'])}")
    return names


def _require_broker(config):
    """Exit with what to do when no broker answers, rather than letting every
    service retry it in silence."""
    from urllib.parse import urlsplit

    from mesh.messaging.health import broker_refusal, broker_unreachable

    refusal = broker_refusal(config["AMQP_URI"])
    if refusal:
        sys.exit(f"mesh: {refusal}")
    why = broker_unreachable(config["AMQP_URI"])
    if why is None:
        return
    where = ", ".join(f"{p.hostname}:{p.port or 5672}{p.path or '/'}" for p in
                      map(urlsplit, config["AMQP_URI"].split(";")))
    sys.exit(f"mesh: no RabbitMQ answers at {where} (AMQP_URI): {why}\n"
             "Start one: `sudo apt-get install rabbitmq-server` (Debian starts it), or "
             "`docker compose -f docker-compose.backing.yml up -d rabbitmq`; "
             "see docs \"Set up\".")


def _operator(config):
    """`config` as the operators' commands connect with it (docs "Broker identities")."""
    from mesh.messaging.identities import OPERATOR, as_identity

    return as_identity(config, OPERATOR)


def _broker_setup(config):
    from mesh.ops.broker_setup import BrokerSetupError, setup

    try:
        return setup(config)
    except BrokerSetupError as exc:
        sys.exit(f"mesh: broker setup: {exc}\n(BROKER_IDENTITIES=false runs every "
                 "service as AMQP_URI's user instead; see docs \"Broker identities\")")


def cmd_broker(args):
    from mesh.core.config import setting

    config = _load(args)
    if not setting(config, "BROKER_IDENTITIES"):
        sys.exit("mesh: broker setup: BROKER_IDENTITIES is off; set it to true first")
    _require_broker(config)
    for identity, user in _broker_setup(config).items():
        print(f"{identity}: broker user {user}")
    return 0


def cmd_up(args):
    import os

    from mesh.auth.tokens import signing_key
    from mesh.core.config import ConfigError, setting
    from mesh.runtime.replicas import parse_scale, replica_counts
    from mesh.runtime.supervisor import Supervisor

    config = _load(args)
    names = _names(args, config)
    try:
        replicas = replica_counts(config, names, parse_scale(args.scale or ""))
    except ConfigError as exc:
        sys.exit(f"mesh: {exc}")
    _require_broker(config)
    os.makedirs(config["MESH_DATA_DIR"], exist_ok=True)
    signing_key(config)  # made once here, so every process reads the same one
    if setting(config, "BROKER_IDENTITIES"):
        _broker_setup(config)  # before any service connects as its own user
    # text for a person at a terminal, JSON lines for anything reading a pipe
    log_format = os.environ.get("MESH_LOG_FORMAT") or \
        ("text" if sys.stdout.isatty() else "json")
    return Supervisor(args.config, config, replicas, log_format=log_format).run()


def cmd_serve(args):
    import eventlet

    eventlet.monkey_patch()
    from mesh.runtime.serve import serve

    config = _load(args)
    _names(argparse.Namespace(only=args.name), config)
    serve(config, args.name, args.replica)
    return 0


def cmd_migrate(args):
    from mesh.data import migrations

    config = _load(args)
    for name in _names(args, config):
        if migrations.upgrade_or_exit(config, name):
            print(f"{name}: at the latest schema")
    return 0


def _one_service(args, config):
    if args.service not in config["SERVICES"]:
        sys.exit(f"mesh: unknown service {args.service!r}; known: "
                 f"{', '.join(config['SERVICES'])}")
    return args.service


def _alembic(step):
    """Run `step()`; an Alembic refusal ends the process in one line."""
    from alembic.util import CommandError

    try:
        return step()
    except CommandError as exc:
        sys.exit(f"mesh: {exc}")


def cmd_revision(args):
    from mesh.data import migrations

    config = _load(args)
    service = _one_service(args, config)
    path = _alembic(lambda: migrations.revision(config, service, args.message,
                                                autogenerate=not args.empty))
    print(f"wrote {path}: review it, then `mesh migrate --only {service}`")
    return 0


def cmd_downgrade(args):
    from mesh.data import migrations

    config = _load(args)
    service = _one_service(args, config)
    _alembic(lambda: migrations.downgrade(config, service, args.target))
    print(f"{service}: at {', '.join(migrations.current(config, service)) or 'base'}")
    return 0


def cmd_current(args):
    from mesh.data import migrations

    config = _load(args)
    for name in _names(args, config):
        if migrations.alembic_config(config, name) is not None:
            print(f"{name}: {', '.join(migrations.current(config, name)) or 'base'}")
    return 0


def cmd_history(args):
    from mesh.data import migrations

    config = _load(args)
    service = _one_service(args, config)
    for revision, down, message in _alembic(lambda: migrations.history(config, service)):
        print(f"{down or 'base'} -> {revision}: {(message.splitlines() or [''])[0]}")
    return 0


def cmd_new(args):
    import os

    from mesh.ops.scaffold import ScaffoldError, new_service

    root = os.path.dirname(os.path.abspath(args.config))
    try:
        written = new_service(root, args.name)
    except ScaffoldError as exc:
        sys.exit(f"mesh: new service: {exc}")
    except Exception as exc:  # after files were written: say so, and what is left
        sys.exit(f"mesh: new service {args.name}: stopped half-way ({exc}); "
                 "`git status` shows what it wrote, `git checkout . && git clean -fd "
                 "services contracts tests deploy` undoes it")
    print("\n".join(["wrote:", *(f"  {path}" for path in written),
                      "and wired it into config.yaml, contracts/__init__.py, "
                      "docker-compose.yml, deploy/; next: `make test`, then make it yours"]))
    return 0


def cmd_status(args):
    import json

    from mesh.ops.status import gather, render

    status = gather(_operator(_load(args)))
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0 if status["ok"] else 1


def _usage(message):
    print(message, file=sys.stderr)
    return 2


def cmd_call(args):
    """Exit codes: 0 answered, 1 answered with an error, 2 bad usage, 3 no answer."""
    import eventlet

    eventlet.monkey_patch()
    import json
    import logging
    import uuid

    from nameko.exceptions import (IncorrectSignature, MalformedRequest, MethodNotFound,
                                   RemoteError, RpcTimeout, UnknownService)
    from nameko.standalone.rpc import ClusterRpcProxy

    import contracts  # noqa: F401 -- registers the typed errors, so they arrive as themselves
    from contracts.base import ContractError

    logging.getLogger("amqp").setLevel(logging.ERROR)  # its chatter is not the answer
    config = _operator(_load(args))
    service, _, method = args.target.partition(".")
    if not service.isidentifier() or not method.isidentifier():
        return _usage(f"mesh: call: {args.target!r} must look like SERVICE.METHOD, "
                      "e.g. inventory.get_product")
    try:
        kwargs = json.loads(args.arguments)
    except ValueError as exc:
        return _usage(f"mesh: call: the arguments are not JSON: {exc}")
    if not isinstance(kwargs, dict):
        return _usage('mesh: call: the arguments must be a JSON object, '
                      'e.g. \'{"product_id": 1}\'')
    request_id = f"op-{uuid.uuid4().hex[:16]}"  # finds this call in every service's logs
    timeout = args.timeout or config["RPC_TIMEOUT"]
    try:
        with ClusterRpcProxy(config, timeout=timeout,
                             context_data={"request_id": request_id}) as rpc:
            result = getattr(getattr(rpc, service), method)(**kwargs)
    except ContractError as exc:
        print(f"{type(exc).__name__}: {exc.message}", file=sys.stderr)
        if exc.fields:
            print(json.dumps(exc.fields, indent=2, sort_keys=True), file=sys.stderr)
        return 1
    except UnknownService:
        print(f"mesh: call: no running service {service!r}", file=sys.stderr)
        return 3
    except RpcTimeout:
        print(f"mesh: call: {service} did not answer within {timeout:g} s "
              f"(request id {request_id})", file=sys.stderr)
        return 3
    except RemoteError as exc:
        print(f"{exc.exc_type}: {exc.value}", file=sys.stderr)
        return 1
    except (MethodNotFound, IncorrectSignature, MalformedRequest) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_shell(args):
    import eventlet

    eventlet.monkey_patch()
    from mesh.core import codec
    from mesh.ops.shell import run_shell

    codec.register()
    run_shell(_operator(_load(args)), args.interface)
    return 0


def cmd_dlq(args):
    from amqp.exceptions import AMQPError
    from kombu.exceptions import OperationalError

    from mesh.messaging.causes import described
    from mesh.ops import dlq

    config = _operator(_load(args))
    try:
        return _dlq(args, config, config["AMQP_URI"])
    except dlq.QueueUnavailable as exc:
        sys.exit(f"mesh: dlq {args.action}: {exc}")
    except (OSError, AMQPError, OperationalError) as exc:
        # a replay cut off after its publishes leaves those messages parked as well:
        # replaying them again is harmless, the inbox takes each event once
        moved = "; what was not acknowledged is still parked" \
            if args.action in ("replay", "purge") else ""
        sys.exit(f"mesh: dlq {args.action}: the broker did not answer "
                 f"({described(exc)}){moved}")


def _dlq(args, config, uri):
    import json

    from mesh.messaging import topology
    from mesh.messaging.causes import first_line
    from mesh.ops import dlq

    if args.action == "groups":
        found = dlq.groups(uri, dlq.handler_queues(config))
        print(json.dumps(found, indent=2) if args.json else dlq.render_groups(found))
        return 0
    if args.action == "list" and not args.queue and not args.group:
        for queue, depth in dlq.depths(uri, dlq.handler_queues(config)).items():
            print(f"{depth or 0:>7}  {topology.dlq_name(queue)}")
        return 0
    if args.group and args.id:
        sys.exit("mesh: dlq: give --group or --id, not both")
    queue = args.queue
    if args.group:
        queue = dlq.queue_of_group(uri, dlq.handler_queues(config), args.group)
        if queue is None:
            sys.exit(f"mesh: dlq {args.action}: no dead letters in group {args.group} "
                     "(see `mesh dlq groups`)")
        if args.queue and dlq.base_queue(args.queue) != queue:
            sys.exit(f"mesh: dlq {args.action}: group {args.group} is in {queue}, "
                     f"not {dlq.base_queue(args.queue)}")
    if not queue:
        sys.exit(f"mesh: dlq {args.action} needs a QUEUE or --group (see `mesh dlq groups`)")
    if args.action == "list":
        for message in dlq.messages(uri, queue):
            if args.group in (None, message["fingerprint"]):
                print(f"{message['id']}  {message['type']}  attempts={message['attempts']}"
                      f"  failed_at={message['failed_at']}  request={message['request_id']}"
                      f"  group={message['fingerprint']}"
                      f"  error={first_line(message['error']) or None}")
    elif args.action == "replay":
        try:
            count = dlq.replay(uri, queue, args.id, args.group)
        except dlq.QueueMissing as exc:
            sys.exit(f"mesh: dlq replay: {exc}")
        print(f"replayed {count} message(s) into {dlq.base_queue(queue)}")
    else:
        if not args.yes:
            sys.exit("mesh: dlq purge drops messages for good; add --yes to confirm")
        print(f"purged {dlq.purge(uri, queue, args.group)} message(s)")
    return 0


def cmd_trace(args):
    import json

    from mesh.ops.trace import UnknownRequest, render, trace

    if (args.request_id is None) == (args.order is None):
        return _usage("mesh: trace: give a REQUEST_ID or --order ID (one of them)")
    for path in args.logs or ():
        if not os.path.isfile(path):
            return _usage(f"mesh: trace: --logs {path}: no such file")
    try:
        story = trace(_operator(_load(args)), args.request_id, order_id=args.order,
                      log_files=args.logs or ())
    except UnknownRequest as exc:
        print(f"mesh: trace: {exc}", file=sys.stderr)
        return 1
    if args.json:  # the steps on stdout, for a script; the rest for the person
        print(json.dumps(story["steps"], indent=2))
        print("\n".join([f"now: {story['where']}"] +
                        [f"note: {note}" for note in story["notes"]]), file=sys.stderr)
    else:
        print(render(story))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="mesh", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml",
                        help="the config file (default: config.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run every service and the gateway")
    up.add_argument("--only", help="comma-separated services to run, e.g. accounts,inventory")
    up.add_argument("--scale", help="processes of some services, e.g. orders=2,inventory=2 "
                    "(default: REPLICAS in config, else 1; more than one needs PostgreSQL)")
    up.set_defaults(func=cmd_up)

    serve = commands.add_parser("serve", help="run one service in this process")
    serve.add_argument("name")
    serve.add_argument("--replica", type=int, default=None,
                       help="which of the service's replicas this is (from 1): "
                       "replica N serves /metrics on its ops port + (N - 1) * 100")
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="bring databases to the latest schema")
    migrate.add_argument("--only", help="comma-separated services")
    migrate.set_defaults(func=cmd_migrate)

    revision = commands.add_parser(
        "revision", help="write a service's next migration from its models (autogenerate)")
    revision.add_argument("service")
    revision.add_argument("-m", "--message", required=True, help="what it changes")
    revision.add_argument("--empty", action="store_true",
                          help="an empty revision to write by hand (data migrations)")
    revision.set_defaults(func=cmd_revision)

    downgrade = commands.add_parser("downgrade", help="take a service's schema back")
    downgrade.add_argument("service")
    downgrade.add_argument("target", help="e.g. orders@-1, orders_0001 or orders@base")
    downgrade.set_defaults(func=cmd_downgrade)

    current = commands.add_parser("current", help="the revision each database is at")
    current.add_argument("--only", help="comma-separated services")
    current.set_defaults(func=cmd_current)

    history = commands.add_parser("history", help="a service's own migrations")
    history.add_argument("service")
    history.set_defaults(func=cmd_history)

    status = commands.add_parser(
        "status", help="instances, queues, outbox backlog and dead letters of each service")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.set_defaults(func=cmd_status)

    call = commands.add_parser("call", help="call one RPC method, e.g. "
                               "mesh call inventory.get_product '{\"product_id\": 1}'")
    call.add_argument("target", help="SERVICE.METHOD")
    call.add_argument("arguments", nargs="?", default="{}",
                      help="the keyword arguments as a JSON object (default: {})")
    call.add_argument("--timeout", type=float, help="seconds to wait (default: RPC_TIMEOUT)")
    call.set_defaults(func=cmd_call)

    new = commands.add_parser("new", help="make something new: `mesh new service NAME`")
    new.add_argument("kind", choices=("service",))
    new.add_argument("name", help="the service's name, e.g. shipments")
    new.set_defaults(func=cmd_new)

    shell = commands.add_parser(
        "shell", help="nameko's shell with the mesh's config: n.rpc (contract-checked, "
        "timed out, a request id each), n.emit(SERVICE, EVENT, DATA), typed errors")
    shell.add_argument("--interface", choices=("bpython", "ipython", "plain"),
                       help="the shell to run (default: the first installed)")
    shell.set_defaults(func=cmd_shell)

    dlq = commands.add_parser(
        "dlq", help="dead-lettered events: groups (by cause), list, replay or purge")
    dlq.add_argument("action", choices=("groups", "list", "replay", "purge"))
    dlq.add_argument("queue", nargs="?", help="a handler's queue (or its .dlq)")
    dlq.add_argument("--id", help="replay only the message with this id (event id)")
    dlq.add_argument("--group", help="only the messages of this cause (a fingerprint "
                     "from `mesh dlq groups`); QUEUE may then be left out")
    dlq.add_argument("--json", action="store_true", help="groups: print JSON")
    dlq.add_argument("--yes", action="store_true", help="confirm a purge")
    dlq.set_defaults(func=cmd_dlq)

    trace = commands.add_parser(
        "trace", help="one request's story across every service, from their databases, "
        "dead letters and (--logs) JSON logs")
    trace.add_argument("request_id", nargs="?", help="the request id (X-Request-Id)")
    trace.add_argument("--order", type=int, help="the request that placed this order")
    trace.add_argument("--logs", nargs="+", metavar="FILE",
                       help="JSON log files to read calls and retries from")
    trace.add_argument("--json", action="store_true", help="print the steps as JSON")
    trace.set_defaults(func=cmd_trace)

    broker = commands.add_parser(
        "broker", help="make each service's broker user and permissions from the "
        "contracts (BROKER_IDENTITIES; `mesh up` does it too)")
    broker.add_argument("action", choices=("setup",))
    broker.set_defaults(func=cmd_broker)

    for sub in (up, serve, migrate, revision, downgrade, current, history, status, call,
                shell, dlq, trace, new, broker):
        sub.add_argument("--config", default=argparse.SUPPRESS,
                         help="the config file (default: config.yaml)")
    return parser


def main(argv=None):
    from mesh.core.logs import quiet_eventlet_deprecation

    quiet_eventlet_deprecation()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
