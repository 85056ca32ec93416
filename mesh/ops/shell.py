"""`mesh shell`: nameko's shell with the mesh's config, its contracts imported,
a timeout and a request id on every RPC call, and events sent as handlers take
them.

In the shell, `n` holds:
- `n.rpc.SERVICE.METHOD(**kwargs)`: checked against the contract before it is
  sent (an unknown method fails at once), answered within RPC_TIMEOUT (else
  `RpcTimeout`); each call carries a fresh request id `shell-...`
  (`n.last_request_id`), which finds it in every service's log lines;
- `n.emit(SERVICE, EVENT, DATA)` (also `n.dispatch_event`): the event in its
  envelope, `data` checked against the contract, published on the service's
  exchange as its outbox would; returns the event id;
- `n.config`, `n.disconnect()`.
`contracts` and every typed error (`NotFound`, `Conflict`, `InvalidInput`,
`InvalidCredentials`, `Busy`, ...) are imported: `except NotFound:` just works.
"""
import datetime as dt
import sys
import uuid
from types import ModuleType

__all__ = ["make_helper", "run_shell"]


class _ServiceCalls:
    def __init__(self, helper, contract):
        self._helper, self._contract = helper, contract

    def __getattr__(self, method):
        self._contract.method(method)  # AttributeError naming the service's methods
        return lambda **kwargs: self._helper._call(self._contract.service, method, kwargs)

    def __dir__(self):
        return sorted(self._contract.methods)


class _Calls:
    def __init__(self, helper):
        self._helper = helper

    def __getattr__(self, service):
        from contracts import CONTRACTS

        if service not in CONTRACTS:
            raise AttributeError(f"no contract declares a service {service!r}; "
                                 f"known: {', '.join(sorted(CONTRACTS))}")
        return _ServiceCalls(self._helper, CONTRACTS[service])

    def __dir__(self):
        from contracts import CONTRACTS

        return sorted(CONTRACTS)


def make_helper(config):
    """The `n` of the shell (see the module's doc)."""
    from nameko.standalone.rpc import ClusterRpcProxy

    from mesh.core.config import setting

    helper = ModuleType("n")
    helper.__doc__ = __doc__
    proxy = ClusterRpcProxy(config, timeout=setting(config, "RPC_TIMEOUT"),
                            context_data={})
    rpc = proxy.start()
    helper.last_request_id = None

    def call(service, method, kwargs):
        helper.last_request_id = f"shell-{uuid.uuid4().hex[:16]}"
        # the standalone proxy sends its worker context's data with every call
        proxy._worker_ctx.data["request_id"] = helper.last_request_id
        return getattr(getattr(rpc, service), method)(**kwargs)

    def emit(service, event_type, data):
        return publish_event(config, service, event_type, data)

    helper._call = call
    helper.rpc = _Calls(helper)
    helper.emit = helper.dispatch_event = emit
    helper.config = config
    helper.disconnect = proxy.stop
    return helper


def publish_event(config, service, event_type, data, correlation_id=None):
    """Publish one contract event as `service`'s outbox would; its event id.
    Refuses an undeclared event or bad `data` (marshmallow's ValidationError),
    and an event no handler's queue is bound to (nameko's UndeliverableMessage)."""
    from nameko.events import get_event_exchange

    from contracts import CONTRACTS
    from mesh.messaging import broker
    from mesh.messaging.outbox import CORRELATION_HEADER, make_envelope

    from marshmallow import ValidationError

    correlation_id = correlation_id or f"shell-{uuid.uuid4().hex[:16]}"
    try:
        envelope = make_envelope(CONTRACTS[service], event_type, data, correlation_id)
    except ValueError as exc:  # a value the schema cannot even write, e.g. "seven"
        raise ValidationError(f"{service}.{event_type} data: {exc}") from None
    envelope["occurred_at"] = envelope["occurred_at"].astimezone(
        dt.timezone.utc).isoformat().replace("+00:00", "Z")
    exchange = get_event_exchange(service, config)
    broker.publish(config["AMQP_URI"], envelope, exchange=exchange, declare=[exchange],
                   routing_key=event_type, mandatory=True,
                   headers={CORRELATION_HEADER: correlation_id},
                   message_id=envelope["event_id"])
    return envelope["event_id"]


def run_shell(config, interface=None):
    """An interactive shell (plain Python when stdin is not a terminal)."""
    from nameko.cli.shell import ShellRunner

    import contracts
    from contracts import errors

    names = {"n": make_helper(config), "contracts": contracts}
    names.update({name: getattr(errors, name) for name in errors.__all__})
    banner = (f"mesh shell, Python {sys.version.split()[0]}; broker "
              f"{config['AMQP_URI'].split('@')[-1]}\n"
              "n.rpc.SERVICE.METHOD(**kwargs), n.emit(SERVICE, EVENT, DATA), "
              "n.last_request_id; help(n) for more")
    ShellRunner(banner, names).start_shell(name=interface)
