"""Dead letters grouped by cause: what varies between two failures alike is left out."""
from mesh.messaging.causes import cause_of, fingerprint, first_line

QUEUE = "evt-orders-payment_requested--payments.on_payment_requested"


def test_failures_that_differ_only_in_ids_and_numbers_share_a_fingerprint():
    alike = ["NotFound: Order 41 not found", "NotFound: Order 42 not found",
             "NotFound: Order 7 not found\n[SQL: SELECT 1]",
             "NotFound: Order 3f2a9c1e-1111-2222-3333-444455556666 not found"]
    assert {cause_of(error) for error in alike} == {("NotFound", "Order # not found")}
    assert len({fingerprint(QUEUE, error) for error in alike}) == 1


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
