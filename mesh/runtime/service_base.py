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


PROVIDED = ("name", "contract", "db", "outbox")


class MeshService:
    telemetry = Telemetry()

    def __init_subclass__(cls, contract=None, models=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if contract is None and models is None:
            return  # a service's variant (a test's, say): its parent's, as declared
        if contract is None or models is None:
            raise TypeError(f"{cls.__name__}: MeshService needs both contract= and models=")
        declared = sorted(set(PROVIDED) & set(vars(cls)))
        if declared:  # one or the other would silently lose
            raise TypeError(f"{cls.__name__} declares {', '.join(declared)}, which "
                            "MeshService provides from its contract and models")
        cls.name, cls.contract = contract.service, contract
        cls.db = Database(models)
        if contract.events:
            cls.outbox = Outbox(contract)
