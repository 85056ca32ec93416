"""The payment provider behind a small interface; the simulated one is the default.

A real provider replaces `SimulatedProvider` with the same two methods. Both take
the order id as an idempotency key, which real providers honour, so a retried
capture or refund never charges or pays back twice.
"""
import dataclasses
import typing
import uuid

__all__ = ["Outcome", "PaymentProvider", "SimulatedProvider", "DECLINED_TOKEN"]

DECLINED_TOKEN = "tok_declined"


@dataclasses.dataclass(frozen=True)
class Outcome:
    ok: bool
    reference: str | None = None
    reason: str | None = None


class PaymentProvider(typing.Protocol):
    """What payments needs of a provider."""

    def capture(self, idempotency_key: str, amount_cents: int,
                card_token: str) -> Outcome: ...

    def refund(self, idempotency_key: str, reference: str,
               amount_cents: int) -> Outcome: ...


class SimulatedProvider:
    """Declines `tok_declined` and captures every other token."""

    def capture(self, idempotency_key, amount_cents, card_token):
        if card_token == DECLINED_TOKEN:
            return Outcome(False, reason="card_declined")
        return Outcome(True, reference=self._reference("ch", idempotency_key))

    def refund(self, idempotency_key, reference, amount_cents):
        return Outcome(True, reference=self._reference("re", idempotency_key))

    @staticmethod
    def _reference(kind, idempotency_key):
        # the same key always gives the same reference, as a real provider would
        return f"sim_{kind}_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex}"
