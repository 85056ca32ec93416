"""`@on_start` runs a service method once, in a worker, when its container starts;
`@timer(interval=s)` every `s` seconds. Both end the worker's unit of work (commit
or roll back) before they go on, as `@rpc` and `@handle_event` do."""
import logging

from nameko.extensions import Entrypoint
from nameko.timer import Timer as NamekoTimer

from mesh.data.db import end_work_of

__all__ = ["on_start", "timer"]

log = logging.getLogger(__name__)


class OnStart(Entrypoint):
    """Fires once after the container starts; a failure is logged, not fatal."""

    ENDS_UNIT_OF_WORK = True  # see mesh.data.db.Database

    def start(self):
        self.container.spawn_worker(self, (), {}, handle_result=self.handle_result)

    def handle_result(self, worker_ctx, result, exc_info):
        exc_info = end_work_of(worker_ctx, exc_info)
        if exc_info is not None:
            log.error("%s.%s failed at start: %s", self.container.service_name,
                      self.method_name, exc_info[1])
        return result, exc_info


on_start = OnStart.decorator


class Timer(NamekoTimer):
    """nameko's timer, whose next tick waits until this one's writes are committed."""

    ENDS_UNIT_OF_WORK = True  # see mesh.data.db.Database

    def handle_result(self, worker_ctx, result, exc_info):
        exc_info = end_work_of(worker_ctx, exc_info)
        return super().handle_result(worker_ctx, result, exc_info)


timer = Timer.decorator
