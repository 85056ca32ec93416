"""`SagaState`: where a service keeps the state of a saga it runs, for `mesh trace`."""
from dataclasses import dataclass
from typing import Callable

__all__ = ["SagaState"]


@dataclass(frozen=True)
class SagaState:
    """Declared on a service class: `saga = SagaState("order_id", "order_created",
    domain.saga_of)`.

    `key` is the field of the events' data that names one saga (an integer id:
    the trace finds its events by it in the outboxes' JSON), `started_by` the
    event this service records when one starts, and `read(connection, key)` gives
    `{"state", "settled", "detail", "at"}` of that saga, or None.
    """

    key: str
    started_by: str
    read: Callable
