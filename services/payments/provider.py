"""The payment provider behind a small interface; the simulated one is the default.

A real provider replaces `SimulatedProvider` with the same two methods. Both take
the order id as an idempotency key, which real providers honour, so a retried
capture or refund never charges or pays back twice.
"""
import dataclasses
import uuid

__all__ = ["Outcome", "PaymentProvider", "SimulatedProvider", "DECLINED_TOKEN"]

DECLINED_TOKEN = "tok_declined"


@dataclasses.dataclass(frozen=True)
class Outcome:
    ok: bool
    reference: str | None = None
    reason: str | None = None


class PaymentProvider:
    def capture(self, idempotency_key, amount_cents, card_token) -> Outcome:
        raise NotImplementedError

    def refund(self, idempotency_key, reference, amount_cents) -> Outcome:
        raise NotImplementedError


class SimulatedProvider(PaymentProvider):
    """Declines `tok_declined` and captures every other token."""

    def capture(self, idempotency_key, amount_cents, card_token):
        if card_token == DECLINED_TOKEN:
            return Outcome(False, reason="card_declined")
        return Outcome(True, reference=f"sim_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex}")

    def refund(self, idempotency_key, reference, amount_cents):
        return Outcome(True, reference=f"simrf_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex}")
