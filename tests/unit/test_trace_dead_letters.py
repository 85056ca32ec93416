"""How `mesh trace` reads the dead letters of a request (mesh.ops.trace)."""
import types

from mesh.ops import dlq, trace

PARKED = {"request_id": "req-1", "event_id": "evt-1", "attempts": 3,
          "failed_at": "2026-12-05T10:00:00+00:00", "fingerprint": "0123456789ab",
          "error": "NotFound: order 7 not found\nTraceback (most recent call last): ..."}


def test_a_dlq_without_its_queue_process_is_noted_and_the_others_are_still_read(monkeypatch):
    queues = ["evt-orders-a--orders.on_a", "evt-orders-b--orders.on_b",
              "evt-orders-c--orders.on_c"]
    monkeypatch.setattr(dlq, "queues_of", lambda name, service_cls: queues)

    def messages(amqp_uri, queue):
        if queue.endswith(".on_a"):
            raise dlq.QueueUnavailable(f"{queue}.dlq has no running queue process")
        return [PARKED]
    monkeypatch.setattr(dlq, "messages", messages)
    mesh = types.SimpleNamespace(classes={"orders": object}, notes=[],
                                 config={"AMQP_URI": "amqp://unused"})

    steps = trace._parked_steps(mesh, "req-1", events=set())

    assert [(step["service"], step["kind"], step["name"]) for step in steps] == \
        [("orders", "dead-letter", "on_b"), ("orders", "dead-letter", "on_c")]
    assert steps[0]["outcome"] == "parked after 3 attempt(s)"
    assert mesh.notes == ["dead letters not read: evt-orders-a--orders.on_a.dlq has no "
                          "running queue process"]
