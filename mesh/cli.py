"""The `mesh` command: up, serve, migrate, dlq.

Imports stay inside each command: `serve` must apply eventlet's monkey patch
before nameko, kombu or the database drivers are imported.
"""
import argparse
import sys

__all__ = ["main"]


def _load(args):
    from mesh.config import ConfigError, load_config

    try:
        return load_config(args.config)
    except ConfigError as exc:
        sys.exit(f"mesh: {exc}")


def _names(args, config):
    names = list(config["SERVICES"])
    if getattr(args, "only", None):
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in config["SERVICES"]]
        if unknown or not names:
            sys.exit(f"mesh: --only: unknown service(s) {', '.join(unknown) or '(none)'}; "
                     f"known: {', '.join(config['SERVICES'])}")
    return names


def cmd_up(args):
    import os

    from mesh.supervisor import Supervisor
    from mesh.tokens import signing_key

    config = _load(args)
    names = _names(args, config)
    os.makedirs(config["MESH_DATA_DIR"], exist_ok=True)
    signing_key(config)  # made once here, so every process reads the same one
    return Supervisor(args.config, config, names).run()


def cmd_serve(args):
    import eventlet

    eventlet.monkey_patch()
    from mesh.serve import serve

    config = _load(args)
    _names(argparse.Namespace(only=args.name), config)
    serve(config, args.name)
    return 0


def cmd_migrate(args):
    from mesh import migrations

    config = _load(args)
    for name in _names(args, config):
        if migrations.upgrade(config, name):
            print(f"{name}: at the latest schema")
    return 0


def cmd_dlq(args):
    from mesh import dlq

    config = _load(args)
    uri = config["AMQP_URI"]
    if args.action == "list" and not args.queue:
        for queue, depth in dlq.depths(uri, dlq.handler_queues(config)).items():
            print(f"{depth or 0:>7}  {dlq.dlq_name(queue)}")
        return 0
    if not args.queue:
        sys.exit(f"mesh: dlq {args.action} needs a QUEUE (see `mesh dlq list`)")
    if args.action == "list":
        for message in dlq.messages(uri, args.queue):
            print(f"{message['id']}  {message['type']}  attempts={message['attempts']}  "
                  f"failed_at={message['failed_at']}  error={message['error']}")
    elif args.action == "replay":
        count = dlq.replay(uri, args.queue, args.id)
        print(f"replayed {count} message(s) into {dlq.base_queue(args.queue)}")
    else:
        if not args.yes:
            sys.exit("mesh: dlq purge drops messages for good; add --yes to confirm")
        print(f"purged {dlq.purge(uri, args.queue)} message(s)")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="mesh", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml",
                        help="the config file (default: config.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run every service and the gateway")
    up.add_argument("--only", help="comma-separated services to run, e.g. accounts,inventory")
    up.set_defaults(func=cmd_up)

    serve = commands.add_parser("serve", help="run one service in this process")
    serve.add_argument("name")
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="bring databases to the latest schema")
    migrate.add_argument("--only", help="comma-separated services")
    migrate.set_defaults(func=cmd_migrate)

    dlq = commands.add_parser("dlq", help="list, replay or purge dead-lettered events")
    dlq.add_argument("action", choices=("list", "replay", "purge"))
    dlq.add_argument("queue", nargs="?", help="a handler's queue (or its .dlq)")
    dlq.add_argument("--id", help="replay only the message with this id (event id)")
    dlq.add_argument("--yes", action="store_true", help="confirm a purge")
    dlq.set_defaults(func=cmd_dlq)

    for sub in (up, serve, migrate, dlq):
        sub.add_argument("--config", default=argparse.SUPPRESS,
                         help="the config file (default: config.yaml)")
    return parser


def main(argv=None):
    from mesh.logs import quiet_eventlet_deprecation

    quiet_eventlet_deprecation()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
