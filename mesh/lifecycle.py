"""`@on_start`: run a service method once, in a worker, when its container starts."""
import logging

from nameko.extensions import Entrypoint

__all__ = ["on_start"]

log = logging.getLogger(__name__)


class OnStart(Entrypoint):
    """Fires once after the container starts; a failure is logged, not fatal."""

    def start(self):
        self.container.spawn_worker(self, (), {}, handle_result=self.handle_result)

    def handle_result(self, worker_ctx, result, exc_info):
        if exc_info is not None:
            log.error("%s.%s failed at start: %s", self.container.service_name,
                      self.method_name, exc_info[1])
        return result, exc_info


on_start = OnStart.decorator
