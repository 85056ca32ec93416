"""The OpenAPI document comes from the route table and the contracts, and is valid."""
from openapi_spec_validator import validate

import gateway
from mesh.http.openapi import openapi_document
from mesh.http.routes import PATH_PARAM, PUBLIC


def document():
    return openapi_document(gateway.ROUTES, gateway.ERRORS)


def test_the_document_is_valid_openapi_3():
    validate(document())


def test_every_route_is_documented_with_its_rules():
    paths = document()["paths"]
    for route in gateway.ROUTES:
        url = PATH_PARAM.sub(r"{\1}", gateway.ROUTES.url(route))
        operation = paths[url][route.method.lower()]
        assert str(route.status) in operation["responses"]
        assert ("security" in operation) == (route.access != PUBLIC)
        documented = {p["name"] for p in operation.get("parameters", []) if "name" in p}
        assert set(route.path_params) <= documented
        assert set(route.headers.values()) <= documented
        if route.access != PUBLIC:
            assert "401" in operation["responses"]


def test_bodies_show_only_what_a_client_sends():
    schemas = document()["components"]["schemas"]
    assert set(schemas["CreateOrderArgs"]["properties"]) == {"items", "payment"}
    assert set(schemas["RestockArgs"]["properties"]) == {"quantity"}
    assert schemas["Error"]["required"] == ["error"]


def test_errors_and_the_bearer_scheme_are_declared():
    components = document()["components"]
    assert components["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for status in ("400", "401", "403", "404", "409", "413", "415", "422", "429",
                   "500", "503", "504"):
        assert f"E{status}" in components["responses"]
