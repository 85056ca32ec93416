"""The container every mesh service runs in: nameko's, with a leaner worker.

nameko's `ServiceContainer._run_worker` builds the worker's call-id stack (a
uuid and a join) for a DEBUG line before asking whether DEBUG is on, times
four steps with context managers whose lines are DEBUG too, and calls every
dependency's `worker_setup`, `worker_result` and `worker_teardown`, most of
them `DependencyProvider`'s empty ones: together about a tenth of a
`get_product` call's CPU in `inventory` (py-spy, `bench.profile --case rpc`).
`MeshContainer` runs a worker with the same steps in the same order, the same
error lines, and the same hooks of every dependency that has one; with DEBUG on
for `nameko.containers` it runs nameko's own `_run_worker`, timing lines
included. `container_config` (mesh.runtime.serve) names it as nameko's
`SERVICE_CONTAINER_CLS`.
"""
import logging
import sys

from nameko.containers import ServiceContainer
from nameko.extensions import DependencyProvider

__all__ = ["MeshContainer", "CONTAINER_CLASS"]

CONTAINER_CLASS = f"{__name__}.MeshContainer"
# nameko's own logger: the mesh's filter (mesh.core.logs) knows its lines
log = logging.getLogger("nameko.containers")
HOOKS = ("worker_setup", "worker_result", "worker_teardown")


def _overrides(provider, hook):
    """Whether `provider`'s `hook` does something: not DependencyProvider's own
    empty method (an instance's patched hook counts as its own)."""
    method = getattr(provider, hook)
    return getattr(method, "__func__", None) is not getattr(DependencyProvider, hook)


class MeshContainer(ServiceContainer):
    """nameko's container whose workers skip what only DEBUG logging needs and
    the dependency hooks that do nothing (see the module's docstring)."""

    _hooked_for = ()  # the dependencies `_hooked` was found among
    _hooked = None  # hook name -> the dependencies that define it

    def _hooks(self):
        # found again when the dependencies change: nameko's entrypoint_waiter
        # adds one to a running container, and takes it away again
        dependencies = tuple(self.dependencies)
        if self._hooked is None or dependencies != self._hooked_for:
            self._hooked = {hook: [p for p in dependencies if _overrides(p, hook)]
                            for hook in HOOKS}
            self._hooked_for = dependencies
        return self._hooked

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

    # the same three steps as nameko's (its testing tools wrap them: entrypoint_waiter
    # waits on _worker_result and _worker_teardown), over the dependencies with a hook

    def _worker_setup(self, worker_ctx):
        for provider in self._hooks()["worker_setup"]:
            provider.worker_setup(worker_ctx)

    def _worker_result(self, worker_ctx, result, exc_info):
        for provider in self._hooks()["worker_result"]:
            provider.worker_result(worker_ctx, result, exc_info)

    def _worker_teardown(self, worker_ctx):
        for provider in self._hooks()["worker_teardown"]:
            provider.worker_teardown(worker_ctx)
