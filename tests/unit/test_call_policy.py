"""Per-target call policies (RPC_TARGETS) and the retry rule (mesh.messaging.policy)."""
import eventlet
import pytest
from eventlet.event import Event
from nameko.exceptions import RemoteError, RpcTimeout
from prometheus_client import CollectorRegistry, Counter

from contracts import inventory, orders
from contracts.errors import NotFound
from mesh.core.config import ConfigError, validate_config
from mesh.messaging.deadline import NEVER, Deadline
from mesh.messaging.guard import Guard, ServiceUnavailable
from mesh.messaging.policy import (CallPolicy, DeadlinePassed, GuardedCall, policy_for,
                                   retryable)
from mesh.testing import load_test_config

GET_PRICES = inventory.CONTRACT.methods["get_prices"]
RESERVE = inventory.CONTRACT.methods["reserve_stock"]


def load(**env):
    return load_test_config("config.yaml", **env)


def test_without_rpc_targets_the_global_settings_are_every_target_s_policy():
    config = load(RPC_TIMEOUT="2.5", CIRCUIT_FAIL_MAX="3", CIRCUIT_RESET_SECONDS="7")
    assert policy_for(config, "inventory") == policy_for(config, "accounts") == CallPolicy(
        timeout=2.5, retries=0, retry_backoff=0.1, circuit_fail_max=3,
        circuit_reset_seconds=7.0, concurrency=100)
    # a hand-made config (a test's, a shell's) gets the same defaults
    assert policy_for({}, "inventory").timeout == 5.0


def test_a_target_s_own_settings_win_over_default_which_wins_over_the_globals():
    config = load(RPC_TIMEOUT="4", RPC_RETRIES="1", RPC_CONCURRENCY="30",
                  RPC_TIMEOUT_INVENTORY="1.5", RPC_RETRIES_INVENTORY="2")
    assert policy_for(config, "inventory") == CallPolicy(
        timeout=1.5, retries=2, retry_backoff=0.1, circuit_fail_max=5,
        circuit_reset_seconds=10.0, concurrency=30)
    assert policy_for(config, "accounts").timeout == 4.0
    assert policy_for(config, "accounts").retries == 1
    assert policy_for(config, "inventory", timeout=9).timeout == 9  # the code's own


def test_policy_delays_double():
    policy = policy_for({"RPC_TARGETS": {"default": {"retry_backoff": 0.2}}}, "x")
    assert [policy.delay(n) for n in range(3)] == [0.2, 0.4, 0.8]


@pytest.mark.parametrize("env, message", [
    (dict(RPC_RETRIES="x"), "RPC_TARGETS: default.retries: must be an integer from 0 to 10"),
    (dict(RPC_RETRIES="1.5"), "default.retries: must be an integer"),
    (dict(RPC_CONCURRENCY="0"), "default.concurrency: must be an integer from 1 to 100000"),
    (dict(RPC_TIMEOUT_INVENTORY="-1"), "inventory.timeout: must be a number from 0.1 to 300"),
    (dict(RPC_TIMEOUT_INVENTORY="true"), "inventory.timeout: must be a number"),
    (dict(RPC_RETRY_BACKOFF="61"), "default.retry_backoff: must be a number from 0 to 60"),
])
def test_a_bad_policy_value_is_one_line_naming_target_and_setting(env, message):
    with pytest.raises(ConfigError) as caught:
        load(**env)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("targets, message", [
    ({"inventroy": {"timeout": 1}}, "RPC_TARGETS: inventroy: is neither default nor a service"),
    ({"inventory": {"timout": 1}}, "RPC_TARGETS: inventory: unknown setting 'timout'"),
    ({"inventory": 3}, "RPC_TARGETS: inventory: must be a service's name mapping"),
    ([1, 2], "RPC_TARGETS: must map default or a service"),
])
def test_a_bad_policy_shape_is_refused(targets, message):
    raw = {"AMQP_URI": "amqp://h/", "GATEWAY_HOST": "h", "GATEWAY_PORT": 1,
           "MESH_DATA_DIR": "/tmp", "SERVICES": {"inventory": "a.b:C"},
           "RPC_TARGETS": targets}
    with pytest.raises(ConfigError, match=message):
        validate_config(raw)


def test_only_idempotent_reads_are_retried_and_only_after_an_unwell_target():
    assert retryable(GET_PRICES, RpcTimeout("slow"))
    assert retryable(GET_PRICES, ConnectionResetError())
    assert not retryable(RESERVE, RpcTimeout("slow"))  # a write may have been done
    # answers are final; a guard's refusal is the fast answer itself
    for exc in (NotFound("x"), RemoteError("ValueError", "x"),
                ServiceUnavailable("inventory", "no running instance")):
        assert not retryable(GET_PRICES, exc)


def test_the_contracts_mark_their_reads_and_no_write_idempotent():
    from contracts import CONTRACTS
    for contract in CONTRACTS.values():
        for name, method in contract.methods.items():
            is_read = name.startswith(("get_", "list_"))
            assert method.idempotent == is_read, f"{contract.service}.{name}"
    assert not orders.CONTRACT.methods["create_order"].idempotent


class Counted:
    """The three counters a GuardedCall counts in, on a registry of their own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.counters = (
            Counter("calls", "", ["service", "target", "method", "outcome"],
                    registry=self.registry),
            Counter("retries", "", ["service", "target", "method"], registry=self.registry),
            Counter("rejected", "", ["service", "target", "cause"], registry=self.registry))

    def value(self, name, **labels):
        return self.registry.get_sample_value(f"{name}_total", labels) or 0


def guarded_call(retries=1, **guard_options):
    guard = Guard("inventory", "amqp://unused", **guard_options)
    guard.present = True
    policy = CallPolicy(timeout=1, retries=retries, retry_backoff=0.01, circuit_fail_max=5,
                        circuit_reset_seconds=10, concurrency=10)
    counted = Counted()
    return GuardedCall("orders", "inventory", guard, policy, counted.counters), counted


def attempts(*outcomes):
    """An attempt function giving `outcomes` in turn (raising the exceptions)."""
    made = []

    def attempt():
        outcome = outcomes[len(made)]
        made.append(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    attempt.made = made
    return attempt


def test_an_idempotent_read_survives_one_timed_out_attempt():
    call, counted = guarded_call(retries=1)
    attempt = attempts(RpcTimeout("lost"), {"prices": {}})
    assert call(GET_PRICES, "get_prices", attempt) == {"prices": {}}
    assert len(attempt.made) == 2
    assert counted.value("retries", service="orders", target="inventory",
                         method="get_prices") == 1
    assert counted.value("calls", service="orders", target="inventory",
                         method="get_prices", outcome="ok") == 1


def test_retries_stop_at_the_policy_s_count_and_the_last_failure_is_raised():
    call, counted = guarded_call(retries=2)
    attempt = attempts(RpcTimeout("1"), RpcTimeout("2"), RpcTimeout("3"), "never")
    with pytest.raises(RpcTimeout, match="3"):
        call(GET_PRICES, "get_prices", attempt)
    assert len(attempt.made) == 3
    assert counted.value("calls", service="orders", target="inventory",
                         method="get_prices", outcome="timeout") == 1


def test_a_write_is_never_retried_nor_an_answer():
    call, counted = guarded_call(retries=3)
    attempt = attempts(RpcTimeout("lost"), "never")
    with pytest.raises(RpcTimeout):
        call(RESERVE, "reserve_stock", attempt)
    assert len(attempt.made) == 1
    attempt = attempts(NotFound("no such product"), "never")
    with pytest.raises(NotFound):
        call(GET_PRICES, "get_prices", attempt)
    assert len(attempt.made) == 1
    assert counted.value("calls", service="orders", target="inventory",
                         method="get_prices", outcome="error") == 1
    assert counted.value("retries", service="orders", target="inventory",
                         method="get_prices") == 0


def test_no_call_is_made_nor_retried_for_a_request_with_no_time_left():
    import time

    call, counted = guarded_call(retries=3)
    attempt = attempts(RpcTimeout("cut short"), "never")
    deadline = Deadline(time.time() + 0.15)  # its caller stops waiting in 150 ms
    with pytest.raises(RpcTimeout):  # what a target that did not answer in time gets
        call(GET_PRICES, "get_prices", lambda: eventlet.sleep(0.06) or attempt(), deadline)
    assert len(attempt.made) == 1  # too little left for another
    assert counted.value("retries", service="orders", target="inventory",
                         method="get_prices") == 0
    attempt = attempts("never")
    with pytest.raises(DeadlinePassed):
        call(GET_PRICES, "get_prices", attempt, Deadline(time.time() + 0.05))
    assert attempt.made == []
    assert counted.value("calls", service="orders", target="inventory",
                         method="get_prices", outcome="expired") == 1
    assert call.guard.breaker.fail_counter == 1  # the timeout, not the call never made


def test_a_deadline_caps_a_timeout_and_allows_a_call_only_with_time_left():
    import time

    soon = Deadline(time.time() + 0.5)
    timeout, why = soon.cap(5)
    assert 0.4 < timeout <= 0.5 and why == ", all the time left of the request it serves"
    assert soon.cap(0.2) == (0.2, "")
    assert soon.allows_call() and not soon.allows_call(after=0.45)
    assert not soon.passed() and Deadline(time.time() - 1).passed()
    assert Deadline(time.time() - 1).cap(5) == (0.001, ", all the time left of the "
                                                       "request it serves")
    # none sent (an event, an HTTP request, a stock caller): one that never passes
    for missing in (None, "soon", b"1"):
        assert Deadline.of(missing) is NEVER
    assert not NEVER.passed() and NEVER.allows_call(after=1e9)
    assert NEVER.cap(5) == (5, "") and Deadline.of(12.5) == Deadline(12.5)


def test_a_refusal_by_the_guard_is_counted_by_cause_and_never_retried():
    call, counted = guarded_call(retries=3, concurrency=1)
    release = Event()
    held = eventlet.spawn(call, GET_PRICES, "get_prices", lambda: release.wait() or "ok")
    eventlet.sleep(0.01)
    attempt = attempts("never")
    with pytest.raises(ServiceUnavailable):
        call(GET_PRICES, "get_prices", attempt)
    assert attempt.made == []
    release.send()
    assert held.wait() == "ok"
    assert counted.value("rejected", service="orders", target="inventory",
                         cause="concurrency") == 1
    assert counted.value("calls", service="orders", target="inventory",
                         method="get_prices", outcome="refused") == 1


def test_an_unavailable_target_reaches_the_caller_s_caller_as_busy_with_its_retry_after():
    from nameko.exceptions import deserialize, serialize

    from contracts.errors import Busy
    from mesh.messaging.rpc import busy_for

    busy = deserialize(serialize(busy_for(ServiceUnavailable(
        "inventory", "its circuit is open", retry_after=10))))
    assert type(busy) is Busy and busy.retry_after == 10
    assert str(busy) == "inventory is unavailable: its circuit is open; try again shortly"
    assert deserialize(serialize(busy_for(RpcTimeout("slow")))).retry_after == 2
    assert Busy("too many password checks").retry_after == 2


def test_a_service_rpc_refuses_methods_its_target_does_not_declare():
    from mesh.messaging.rpc import ServiceRpc, ServiceRpcs

    assert ServiceRpc(inventory.CONTRACT, methods={"get_prices"}).methods == {
        "inventory": {"get_prices"}}
    for methods in ({"get_prises"}, set()):
        with pytest.raises(ValueError, match="inventory"):
            ServiceRpc(inventory.CONTRACT, methods=methods)
    with pytest.raises(ValueError, match="services not called: \\['orders'\\]"):
        ServiceRpcs({"inventory": inventory.CONTRACT}, methods={"orders": {"get_order"}})


@pytest.mark.parametrize("value", [float("nan"), None, "soon", [1]])
def test_a_deadline_that_says_no_instant_never_passes(value):
    # NaN compares false with everything: before Deadline it never expired a
    # request nor refused a call, and it must not start refusing every call now
    deadline = Deadline.of(value)
    assert not deadline.passed() and deadline.allows_call() and deadline.cap(5) == (5, "")
