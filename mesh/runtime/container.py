"""The container every mesh service runs in: nameko's, with a leaner worker.

nameko's `ServiceContainer._run_worker` builds the worker's call-id stack (a
uuid, a deque and a join) for a DEBUG line before asking whether DEBUG is on,
and times four steps with context managers whose lines are DEBUG too: about 7%
of a `get_product` call's CPU in `inventory` (py-spy, `bench.profile --case
rpc`). `MeshContainer` runs a worker with the same steps in the same order,
through the same `_worker_setup`, `_worker_result` and `_worker_teardown`
(nameko's testing tools wrap them), with the same error lines; with DEBUG on
for `nameko.containers` it runs nameko's own `_run_worker`, timing lines
included. `container_config` (mesh.runtime.serve) names it as nameko's
`SERVICE_CONTAINER_CLS`.
"""
import logging
import sys

from nameko.containers import ServiceContainer

__all__ = ["MeshContainer", "CONTAINER_CLASS"]

CONTAINER_CLASS = f"{__name__}.MeshContainer"
# nameko's own logger: the mesh's filter (mesh.core.logs) knows its lines
log = logging.getLogger("nameko.containers")


class MeshContainer(ServiceContainer):
    """nameko's container whose workers skip what only DEBUG logging needs."""

    def _run_worker(self, worker_ctx, handle_result):
        if log.isEnabledFor(logging.DEBUG):
            return super()._run_worker(worker_ctx, handle_result)
        self._inject_dependencies(worker_ctx)
        self._worker_setup(worker_ctx)

        result = exc_info = None
        method = getattr(worker_ctx.service, worker_ctx.entrypoint.method_name)
        try:
            result = method(*worker_ctx.args, **worker_ctx.kwargs)
        except Exception as exc:
            if isinstance(exc, worker_ctx.entrypoint.expected_exceptions):
                log.warning("(expected) error handling worker %s: %s", worker_ctx, exc,
                            exc_info=True)
            else:
                log.exception("error handling worker %s: %s", worker_ctx, exc)
            exc_info = sys.exc_info()

        if handle_result is not None:
            result, exc_info = handle_result(worker_ctx, result, exc_info)

        self._worker_result(worker_ctx, result, exc_info)
        # as nameko does: the traceback's frames go now, not at the next collection
        del exc_info
        self._worker_teardown(worker_ctx)
