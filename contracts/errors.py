"""Typed errors shared by every service contract."""
from contracts.base import ContractError

__all__ = ["NotFound", "Conflict", "InvalidInput", "InvalidCredentials", "Busy",
           "ContractViolation"]


class NotFound(ContractError):
    """The thing asked for does not exist (or is not the caller's to see)."""
    code = "not_found"


class Conflict(ContractError):
    """The change clashes with what exists: a duplicate key, say."""
    code = "conflict"


class InvalidInput(ContractError):
    """Arguments failed the contract; `fields` maps each field to its messages."""
    code = "validation_error"


class InvalidCredentials(ContractError):
    """Wrong email or wrong password: deliberately indistinguishable."""
    code = "invalid_credentials"


class Busy(ContractError):
    """The service is at its limit for this kind of work; try again shortly."""
    code = "service_unavailable"
    retry_after = 2  # seconds, unless the service says otherwise in fields["retry_after"]

    def __init__(self, message, fields=None):
        super().__init__(message, fields)
        # across RPC nameko's error serialisation has made the number a string
        if str(self.fields.get("retry_after")).isdigit():
            self.retry_after = int(self.fields["retry_after"])


class ContractViolation(ContractError):
    """The service produced a result its own contract does not allow: a bug."""
    code = "internal_error"
