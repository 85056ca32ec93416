"""The circuit breaker around calls to one service (mesh.messaging.guard)."""
import eventlet
import pybreaker
import pytest
from eventlet.event import Event
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService

from contracts.errors import InvalidInput, NotFound
from mesh.messaging.guard import Guard, ServiceUnavailable


def present_guard(**options):
    """A guard that has seen the service running (no broker needed)."""
    guard = Guard("inventory", "amqp://unused", **options)
    guard.present = True
    return guard


def fail(exc):
    def call():
        raise exc
    return call


def test_only_an_unwell_service_counts_toward_the_circuit():
    guard = present_guard(fail_max=2, reset_seconds=60)
    # answers, however often: expected errors, and errors a client can provoke
    for exc in (NotFound("x"), InvalidInput("x"), RemoteError("UnicodeEncodeError", "x"),
                ValueError("x")) * 3:
        with pytest.raises(type(exc)):
            guard.call(fail(exc))
    assert guard.state == pybreaker.STATE_CLOSED
    with pytest.raises(RpcTimeout):
        guard.call(fail(RpcTimeout("slow")))
    with pytest.raises(UnknownService):
        guard.call(fail(UnknownService("inventory")))
    assert guard.state == pybreaker.STATE_OPEN
    with pytest.raises(ServiceUnavailable, match="circuit is open"):
        guard.call(lambda: "never called")


def test_calls_run_concurrently_through_a_closed_circuit():
    guard = present_guard()
    running, release = [], Event()

    def slow_call():
        running.append(1)
        release.wait()
        return "ok"

    threads = [eventlet.spawn(guard.call, slow_call) for _ in range(5)]
    eventlet.sleep(0.01)
    assert len(running) == 5  # none waits for another to finish
    release.send()
    assert [t.wait() for t in threads] == ["ok"] * 5


def test_a_half_open_circuit_lets_one_probe_through_and_its_success_closes_it():
    guard = present_guard(fail_max=1, reset_seconds=0.05)
    with pytest.raises(RpcTimeout):
        guard.call(fail(RpcTimeout("slow")))
    eventlet.sleep(0.1)
    release = Event()
    probe = eventlet.spawn(guard.call, lambda: release.wait() or "probed")
    eventlet.sleep(0.01)
    assert guard.state == pybreaker.STATE_HALF_OPEN
    with pytest.raises(ServiceUnavailable):  # a second call while the probe runs
        guard.call(lambda: "not yet")
    release.send()
    assert probe.wait() == "probed"
    assert guard.state == pybreaker.STATE_CLOSED
    assert guard.call(lambda: "ok") == "ok"


def test_a_failed_probe_opens_the_circuit_again():
    guard = present_guard(fail_max=1, reset_seconds=0.05)
    with pytest.raises(RpcTimeout):
        guard.call(fail(RpcTimeout("slow")))
    eventlet.sleep(0.1)
    with pytest.raises(RpcTimeout):
        guard.call(fail(RpcTimeout("still slow")))
    assert guard.state == pybreaker.STATE_OPEN
    with pytest.raises(ServiceUnavailable):
        guard.call(lambda: "refused")


def test_before_the_watcher_looks_a_call_asks_the_broker():
    guard = Guard("inventory", "amqp://guest:guest@127.0.0.1:1/")  # nobody answers there
    with pytest.raises(ServiceUnavailable, match="no running instance"):
        guard.call(lambda: "never called")


def test_while_the_cluster_settles_a_call_waits_for_an_instance_instead_of_a_refusal(
        monkeypatch):
    # after a lost node every instance subscribes again on another: refusing
    # would turn that moment's wait into a client's retry seconds later
    from mesh.messaging import nodes
    asked = []  # asking the broker again finds no instance
    monkeypatch.setattr(Guard, "_present_now", lambda guard: asked.append(guard.service))
    moving, never_ran, long_gone = (Guard(name, "amqp://unused") for name in "abc")
    long_gone.saw(1)
    monkeypatch.setattr(long_gone, "seen_at", long_gone.seen_at - nodes.SETTLE_SECONDS - 1)
    moving.saw(1)  # the watcher saw an instance, then the node was lost
    nodes.lost("192.0.2.1:5672", "missed heartbeats")
    moving.saw(0)  # and now none, while it subscribes again
    assert moving.call(lambda: "answered once one subscribed") == \
        "answered once one subscribed"
    for guard in (never_ran, long_gone):  # not running before the loss: refused as ever
        guard.saw(0)
        with pytest.raises(ServiceUnavailable, match="no running instance"):
            guard.call(lambda: "never called")
    nodes._lost_at.clear()  # settled: no instance is no instance again
    with pytest.raises(ServiceUnavailable, match="no running instance"):
        moving.call(lambda: "never called")
    assert asked == ["b", "c", "a"]


def test_beyond_its_concurrency_a_call_is_refused_at_once_and_counts_no_failure():
    guard = present_guard(fail_max=1, concurrency=2)
    release = Event()
    held = [eventlet.spawn(guard.call, lambda: release.wait() or "ok") for _ in range(2)]
    eventlet.sleep(0.01)
    with pytest.raises(ServiceUnavailable, match="2 calls to it are already in flight") \
            as caught:
        guard.call(lambda: "not now")
    assert (caught.value.cause, caught.value.retry_after) == ("concurrency", 1)
    assert guard.state == pybreaker.STATE_CLOSED  # a refusal is not the target's fault
    release.send()
    assert [t.wait() for t in held] == ["ok", "ok"]
    assert guard.in_flight == 0
    with pytest.raises(RpcTimeout):  # a failed call gives its place back too
        guard.call(fail(RpcTimeout("slow")))
    assert guard.in_flight == 0


def test_what_fails_while_the_process_loses_a_broker_node_opens_no_circuit():
    from mesh.messaging import nodes
    from mesh.messaging.guard import AnswerLost
    guard = present_guard(fail_max=2, reset_seconds=60)
    for _ in range(3):  # its answers were on the lost connection: not the service's
        with pytest.raises(AnswerLost):
            guard.call(fail(AnswerLost("lost")))
    assert guard.state == pybreaker.STATE_CLOSED
    for _ in range(2):  # timed out in flight, on the way to a node that stopped
        with pytest.raises(RpcTimeout):
            guard.call(fail(RpcTimeout("slow")))
    assert guard.state == pybreaker.STATE_OPEN
    nodes.lost("192.0.2.1:5672", "missed heartbeats")
    assert guard.state == pybreaker.STATE_CLOSED  # the process moved: start afresh
    assert guard.call(lambda: "ok") == "ok"


@pytest.mark.parametrize("had_one", [True, False])
def test_the_watcher_looks_once_more_through_a_new_connection_when_one_fails(
        monkeypatch, had_one):
    # its node may have been lost, with or without a connection kept from before
    from mesh.messaging import guard as module
    made, looked, let_go = [], [], []
    monkeypatch.setattr(module, "_watching", lambda uri: made.append(object()) or made[-1])

    def look(connection, guards):
        looked.append(connection)
        if len(looked) == 1:
            raise OSError("its node is gone")
    monkeypatch.setattr(module, "_look", look)
    monkeypatch.setattr(module, "let_go", let_go.append)
    kept = object() if had_one else None
    answered = module._look_again("pyamqp://", kept, [])
    assert answered is made[-1] and looked == [kept or made[0], made[-1]]
    assert let_go == [looked[0]] and len(made) == (1 if had_one else 2)
