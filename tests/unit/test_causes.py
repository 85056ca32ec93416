"""Dead letters grouped by cause: what varies between two failures alike is left out."""
from mesh.messaging.causes import cause_of, fingerprint, first_line

QUEUE = "evt-orders-payment_requested--payments.on_payment_requested"


def test_failures_that_differ_only_in_ids_and_numbers_share_a_fingerprint():
    alike = ["NotFound: Order 41 not found", "NotFound: Order 42 not found",
             "NotFound: Order order_43 not found at 2026-12-05T03:39:42.123Z",
             "NotFound: Order 7 not found\n[SQL: SELECT 1]",
             "NotFound: Order 3f2a9c1e-1111-2222-3333-444455556666 not found"]
    assert {cause_of(error)[1].removesuffix(" at #").replace("order_", "")
            for error in alike} == {"Order # not found"}
    assert cause_of(alike[2]) == ("NotFound", "Order order_# not found at #")
    assert len({fingerprint(QUEUE, error) for error in alike[:2] + alike[3:]}) == 1
    # a number that is part of a name stays: it names something else
    assert cause_of("OperationalError: (sqlite3.OperationalError) no such table")[1] == \
        "(sqlite3.OperationalError) no such table"


def test_another_type_message_or_queue_is_another_cause():
    base = fingerprint(QUEUE, "NotFound: Order 1 not found")
    assert fingerprint(QUEUE, "Conflict: Order 1 not found") != base
    assert fingerprint(QUEUE, "NotFound: Product 1 not found") != base
    assert fingerprint(QUEUE + "x", "NotFound: Order 1 not found") != base
    assert len(base) == 12 and int(base, 16) >= 0


def test_an_untyped_or_missing_error_still_has_a_cause():
    assert cause_of(None) == ("unknown", "")
    assert cause_of("x-mesh-attempt header 'x' is not a count; RuntimeError: boom") == (
        "other", "x-mesh-attempt header 'x' is not a count; RuntimeError: boom")
    assert cause_of("malformed: bad   json\n at 12") == ("malformed", "bad json")
    assert first_line("\n\n  (sqlite3.OperationalError) no such table: payments\n[SQL: x]") \
        == "(sqlite3.OperationalError) no such table: payments"


def test_dead_letters_with_malformed_headers_are_still_described():
    from types import SimpleNamespace

    from mesh.ops.dlq import _describe

    def parked(headers, body=b"{}", message_id=None):
        return SimpleNamespace(headers=headers, body=body,
                               properties={"message_id": message_id})

    odd = _describe(parked({"x-mesh-error": b"RuntimeError: boom 7",
                            "x-mesh-attempt": b"3", "x-mesh-failed-at": "yesterday",
                            "x-death": "not a list", "nameko.request_id": 42},
                           body=b'{"event_id": ["a"], "type": 5}'), QUEUE)
    assert (odd["error"], odd["attempts"], odd["failed_at"], odd["request_id"]) == (
        "RuntimeError: boom 7", "3", None, "42")
    assert (odd["event_id"], odd["type"], odd["error_type"]) == ("['a']", "5", "RuntimeError")
    by_broker = _describe(parked({"x-death": [{"reason": b"delivery_limit"}],
                                  "x-mesh-failed-at": "2026-12-05T03:39:42",
                                  "x-mesh-attempt": 2}), QUEUE)
    assert (by_broker["error_type"], by_broker["failed_at"], by_broker["attempts"]) == (
        "broker delivery_limit", "2026-12-05T03:39:42.000Z", 2)  # naive: UTC
    assert _describe(parked("not a table", body=b"\xff"), QUEUE)["error_type"] == "unknown"


def test_log_lines_that_are_not_the_mesh_s_are_passed_over(tmp_path):
    from mesh.ops.trace import _logged_steps

    class Mesh:
        @staticmethod
        def rpc_methods(service):
            return {"create_order"} if service == "orders" else set()

    log = tmp_path / "mesh.log"
    log.write_text("\n".join([
        "not json r1", '["r1"]', '{"request_id": "r1", "timestamp": "noon"}',
        '{"request_id": "r1", "timestamp": 5, "logger": "mesh.worker"}',
        '{"request_id": "r1", "timestamp": "2026-12-05T03:39:42.100Z", "logger": '
        '"mesh.worker", "service": "orders", "entrypoint": "create_order", '
        '"outcome": "ok", "duration_ms": "slow"}',
        '{"request_id": "r1", "timestamp": "2026-12-05T03:39:43Z", "message": '
        '"inventory.on_x failed on attempt 1 (KeyError: order_1); retrying in 1000 ms"}',
        '{"request_id": "r2", "timestamp": "2026-12-05T03:39:44Z"}']) + "\n")
    steps = _logged_steps(Mesh(), "r1", [log])
    assert [(s["service"], s["kind"], s["name"], s["outcome"], s["detail"])
            for s in steps] == [
        ("orders", "rpc", "create_order", "answered", None),
        ("?", "retry", "?", "attempt 1 failed, again in 1 s", "KeyError: order_1")]
