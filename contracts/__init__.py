"""Wire contracts of every service: RPC methods, typed errors and event schemas.

Imports nothing from `services/` or `mesh/`; consumers import these instead of
re-declaring shapes.
"""
from contracts import accounts, inventory, notifications, orders, payments
from contracts.base import ServiceContract

__all__ = ["CONTRACTS", "contract_for"]

CONTRACTS: dict[str, ServiceContract] = {
    c.service: c for c in (accounts.CONTRACT, inventory.CONTRACT, orders.CONTRACT,
                           payments.CONTRACT, notifications.CONTRACT)
}


def contract_for(service):
    """The contract of `service`; KeyError when no contract declares it."""
    return CONTRACTS[service]
