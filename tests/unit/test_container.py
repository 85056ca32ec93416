"""MeshContainer runs a worker as nameko's container does, minus what only DEBUG needs."""
import itertools
import logging

import pytest
from nameko.containers import ServiceContainer, get_container_cls
from nameko.extensions import DependencyProvider, Entrypoint
from nameko.testing.services import entrypoint_waiter

from mesh.runtime.container import MeshContainer
from mesh.runtime.serve import container_config


class Expected(Exception):
    pass


class Recorder(DependencyProvider):
    """Records every hook nameko calls on it, in order."""

    def __init__(self, calls):
        self.calls = calls

    def get_dependency(self, worker_ctx):
        self.calls.append(("get_dependency", self.attr_name))
        return self.attr_name

    def worker_setup(self, worker_ctx):
        self.calls.append(("worker_setup", self.attr_name))

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        self.calls.append(("worker_result", self.attr_name, result,
                           exc_info and exc_info[0].__name__))

    def worker_teardown(self, worker_ctx):
        self.calls.append(("worker_teardown", self.attr_name))


class Plain(DependencyProvider):
    """Only injects: every hook is DependencyProvider's empty one."""

    def get_dependency(self, worker_ctx):
        return "plain"


class Call(Entrypoint):
    pass


def service_class(calls):
    class Service:
        name = "toy"
        first = Recorder(calls)
        plain = Plain()
        second = Recorder(calls)

        @Call.decorator(expected_exceptions=Expected)
        def answer(self, value):
            calls.append(("method", self.first, self.plain, self.second))
            if value == "expected":
                raise Expected("refused")
            if value == "unexpected":
                raise KeyError("broken")
            return value * 2

    return Service


def work(container, value, **options):
    """Run one worker of the container's one entrypoint on `value`, to its end."""
    (entrypoint,) = container.entrypoints
    container._worker_threads[container.spawn_worker(entrypoint, (value,), {},
                                                     **options)].wait()


def run(container_cls, value):
    """The calls a worker of `container_cls` made (its dependencies' hooks, the
    method, the entrypoint's handle_result), step by step."""
    calls = []
    container = container_cls(service_class(calls), {"AMQP_URI": "memory://"})

    def handle_result(worker_ctx, result, exc_info):
        calls.append(("handle_result", result, exc_info and exc_info[0].__name__))
        return result, exc_info

    work(container, value, handle_result=handle_result)
    # each step's dependencies come in the order of a set: sorted within the step
    steps = itertools.groupby(calls, key=lambda call: call[0])
    return [sorted(step) for _, step in steps]


@pytest.mark.parametrize("value", ["ok", "expected", "unexpected"])
def test_a_worker_makes_the_same_calls_in_the_same_order_as_nameko(value):
    ours = run(MeshContainer, value)
    assert ours == run(ServiceContainer, value)
    assert [step[0][0] for step in ours] == [
        "get_dependency", "worker_setup", "method", "handle_result", "worker_result",
        "worker_teardown"]
    assert ours[0] == [("get_dependency", "first"), ("get_dependency", "second")]
    assert ours[2] == [("method", "first", "plain", "second")]


def test_a_hook_patched_on_the_class_after_a_worker_ran_is_called(monkeypatch):
    calls = []
    container = MeshContainer(service_class(calls), {"AMQP_URI": "memory://"})
    work(container, "ok")
    monkeypatch.setattr(Plain, "worker_teardown",
                        lambda provider, worker_ctx: calls.append(("patched teardown",)),
                        raising=False)
    work(container, "ok")
    assert ("patched teardown",) in calls


@pytest.mark.parametrize("value, level", [("expected", logging.WARNING),
                                          ("unexpected", logging.ERROR)])
def test_a_failing_worker_logs_what_nameko_logs(value, level, caplog):
    lines = {}
    for container_cls in (ServiceContainer, MeshContainer):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="nameko.containers"):
            run(container_cls, value)
        lines[container_cls] = [(r.name, r.levelno, r.getMessage().split(" worker ")[0],
                                 r.exc_info is not None) for r in caplog.records]
    assert lines[MeshContainer] == lines[ServiceContainer]
    assert [line[:2] for line in lines[MeshContainer]] == [("nameko.containers", level)]


def test_with_debug_on_it_runs_nameko_s_own_worker_and_its_timing_lines(caplog):
    with caplog.at_level(logging.DEBUG, logger="nameko.containers"):
        run(MeshContainer, "ok")
    assert any(r.getMessage().startswith("ran worker") for r in caplog.records)


def test_every_service_the_mesh_starts_runs_in_it():
    config = {"AMQP_URI": "amqp://guest:guest@127.0.0.1:5672/", "SERVICES": {}}
    assert get_container_cls(container_config(config, "orders")) is MeshContainer


def test_nameko_s_entrypoint_waiter_sees_its_workers():
    """It waits on the container's _worker_result and _worker_teardown."""
    container = MeshContainer(service_class([]), {"AMQP_URI": "memory://"})
    (entrypoint,) = container.entrypoints
    with entrypoint_waiter(container, "answer", timeout=5) as waited:
        container.spawn_worker(entrypoint, ("ok",), {})
    assert waited.get() == "okok"
