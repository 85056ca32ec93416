"""MeshService gives a service what the platform provides, once, and says so when a
class would quietly lose one of its own declarations to it."""
import pytest

from contracts.inventory import CONTRACT as INVENTORY
from contracts.notifications import CONTRACT as NOTIFICATIONS
from mesh.data.db import Database
from mesh.messaging.outbox import Outbox
from mesh.runtime.service_base import MeshService
from mesh.runtime.telemetry import Telemetry
from services.inventory.models import Base as InventoryBase
from services.inventory.service import InventoryService
from services.notifications.models import Base as NotificationsBase


def test_a_service_gets_name_contract_database_telemetry_and_its_outbox():
    assert (InventoryService.name, InventoryService.contract) == ("inventory", INVENTORY)
    assert isinstance(InventoryService.db, Database)
    assert InventoryService.db.declarative_base is InventoryBase
    assert isinstance(InventoryService.outbox, Outbox)
    assert isinstance(InventoryService.telemetry, Telemetry)


def test_a_contract_without_events_gets_no_outbox():
    class Quiet(MeshService, contract=NOTIFICATIONS, models=NotificationsBase):
        pass

    assert not hasattr(Quiet, "outbox")


def test_a_variant_of_a_service_keeps_its_parents_declarations():
    class SlowInventory(InventoryService):
        pass

    assert SlowInventory.name == "inventory" and SlowInventory.db is InventoryService.db


@pytest.mark.parametrize("declared", ["name", "db", "outbox"])
def test_a_declaration_it_would_overwrite_is_refused(declared):
    with pytest.raises(TypeError, match=f"declares {declared}"):
        type("Twice", (MeshService,), {declared: object()},
             contract=INVENTORY, models=InventoryBase)


def test_both_contract_and_models_are_needed():
    with pytest.raises(TypeError, match="needs both"):
        class Half(MeshService, contract=INVENTORY):
            pass
