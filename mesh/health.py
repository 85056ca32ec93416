"""Readiness: does the broker answer, and does each service have a consumer?"""
from amqp.exceptions import NotFound
from kombu import Connection
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider

__all__ = ["check_services", "Readiness"]


def check_services(amqp_uri, services, timeout=2.0):
    """`(ready, checks)`: each check is "ok" or what is wrong.

    A passive declare of `rpc-<service>` answers at once with its consumer
    count, unlike the management API, which reports consumers seconds late.
    """
    checks = {}
    try:
        with Connection(amqp_uri, connect_timeout=timeout,
                        transport_options={"max_retries": 0}) as connection:
            connection.connect()
            checks["broker"] = "ok"
            channel = connection.channel()
            for service in services:
                try:
                    consumers = channel.queue_declare(f"rpc-{service}", passive=True)[2]
                    checks[service] = "ok" if consumers else "no running instance"
                except NotFound:
                    checks[service] = "never started"
                    channel = connection.channel()  # the failed declare closed it
    except Exception as exc:  # any failure to reach the broker means "not ready"
        checks["broker"] = f"unreachable: {type(exc).__name__}"
        checks.update({service: "unknown" for service in services if service not in checks})
    return all(v == "ok" for v in checks.values()), checks


class Readiness(DependencyProvider):
    """Gives workers a callable that checks the broker and the services.

    By default: every other service in config's SERVICES.
    """

    def __init__(self, services=None):
        self.services = list(services) if services is not None else None

    def setup(self):
        if self.services is None:
            self.services = [name for name in self.container.config.get("SERVICES", {})
                             if name != self.container.service_name]

    def get_dependency(self, worker_ctx):
        uri = self.container.config[AMQP_URI_CONFIG_KEY]
        return lambda: check_services(uri, self.services)
