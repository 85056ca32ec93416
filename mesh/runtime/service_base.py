"""What every service of the mesh has, declared once.

``class InventoryService(MeshService, contract=CONTRACT, models=Base)`` gives the
class its `name` (the contract's service), its `contract` (which `@rpc` and the
gateway check against), `db` (its own database, `mesh.data.db.Database`, holding
`models`' tables), `telemetry` (worker logs, metrics, traces) and, when the
contract declares events, `outbox` (`mesh.messaging.outbox.Outbox`). The class
body then holds only what is the service's own: its other dependencies and its
entrypoints.
"""
from mesh.data.db import Database
from mesh.messaging.outbox import Outbox
from mesh.runtime.telemetry import Telemetry

__all__ = ["MeshService"]


class MeshService:
    telemetry = Telemetry()

    def __init_subclass__(cls, contract, models, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name, cls.contract = contract.service, contract
        cls.db = Database(models)
        if contract.events:
            cls.outbox = Outbox(contract)
