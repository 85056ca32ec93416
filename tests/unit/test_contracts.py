import inspect

import pytest
from marshmallow import ValidationError
from nameko.exceptions import deserialize, serialize

import contracts
from contracts.base import ContractError, Int, UtcDateTime
from contracts.errors import Conflict, InvalidInput, NotFound
from mesh.core.config import load_config
from mesh.messaging.rpc import ContractRpc
from mesh.core.services import import_service


@pytest.mark.parametrize("value", [True, 1.0, 1.5, "1", None, 2**63, -2**63 - 1])
def test_int_is_strict(value):
    with pytest.raises(ValidationError):
        Int(required=True).deserialize(value)


def test_int_takes_integers():
    assert Int().deserialize(7) == 7


def test_timestamps_are_utc_with_z():
    import datetime as dt
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert UtcDateTime()._serialize(stamp, None, None) == "2026-01-02T01:04:05Z"


@pytest.mark.parametrize("error", [NotFound("product 1 not found"),
                                   InvalidInput("bad", {"sku": ["Too long."]})])
def test_contract_errors_cross_rpc_as_their_own_class(error):
    again = deserialize(serialize(error))
    assert type(again) is type(error)
    assert again.message == error.message and again.fields == error.fields


def test_every_contract_error_is_a_contract_error():
    for contract in contracts.CONTRACTS.values():
        for method in contract.methods.values():
            assert all(issubclass(e, ContractError) for e in method.errors)


def rpc_methods(service_cls):
    return {name for name, member in inspect.getmembers(service_cls)
            if any(isinstance(e, ContractRpc)
                   for e in getattr(member, "nameko_entrypoints", ()))}


def services():
    config = load_config("config.yaml")
    return [import_service(path) for name, path in config["SERVICES"].items()
            if name in contracts.CONTRACTS]


@pytest.mark.parametrize("service_cls", services(), ids=lambda c: c.name)
def test_service_implements_exactly_its_contract(service_cls):
    contract = contracts.contract_for(service_cls.name)
    assert service_cls.contract is contract
    assert rpc_methods(service_cls) == set(contract.methods)
    for name, method in contract.methods.items():
        params = list(inspect.signature(getattr(service_cls, name)).parameters)[1:]
        assert set(params) == set(method.args._declared_fields), name


def test_every_gateway_route_names_a_declared_method_and_errors():
    import gateway

    for route in gateway.ROUTES:
        assert route.contract is contracts.contract_for(route.contract.service)
        method = route.contract.methods[route.rpc]
        for error in method.errors:
            assert any(issubclass(error, known) for known in gateway.ERRORS), \
                f"{route.target} may raise {error.__name__}, which the gateway cannot map"


def test_every_rpc_dependency_names_a_contract():
    from mesh.messaging.rpc import ServiceRpc

    import gateway
    for service_cls in [*services(), gateway.GatewayService]:
        for name in dir(service_cls):  # as nameko finds dependencies: inherited too
            value = getattr(service_cls, name)
            if isinstance(value, ServiceRpc):
                for contract in value.contracts.values():
                    assert contracts.contract_for(contract.service) is contract


def test_a_route_to_an_undeclared_method_fails_at_import():
    from mesh.http import Route

    with pytest.raises(AttributeError, match="declares no RPC method"):
        Route("GET", "/x", contracts.contract_for("inventory"), "drop_tables")


def test_a_route_whose_path_names_an_unknown_argument_fails():
    from mesh.http import Route

    with pytest.raises(ValueError, match="takes no argument"):
        Route("GET", "/products/<int:id>", contracts.contract_for("inventory"),
              "get_product")


def test_a_route_that_changes_access_must_name_the_user():
    from mesh.http import Route

    with pytest.raises(ValueError, match=r"takes no argument\(s\) \['user_id'\]"):
        Route("POST", "/products/<int:product_id>/restock", contracts.contract_for(
            "inventory"), "restock", changes_access=True)


def test_conflict_is_distinct_from_not_found():
    assert not issubclass(Conflict, NotFound)
