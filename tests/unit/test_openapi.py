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


def test_the_bearer_scheme_is_declared():
    components = document()["components"]
    assert components["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_each_route_documents_every_error_code_it_can_answer():
    paths = document()["paths"]

    def codes(path, method, status):
        return paths[path][method]["responses"][status]["description"]
    assert codes("/api/v1/orders", "post", "409") == "`idempotency_key_reused`"
    assert codes("/api/v1/orders", "post", "422") == \
        "`unknown_product`, `validation_error`"
    assert codes("/api/v1/orders/{order_id}/cancel", "post", "409") == \
        "`order_not_cancellable`"
    assert codes("/api/v1/auth/token", "post", "401") == "`invalid_credentials`"
    assert codes("/api/v1/products", "post", "409") == "`conflict`"
    assert codes("/api/v1/me", "get", "401") == "`unauthorized`"
    for route in gateway.ROUTES:  # every declared error of every route is there
        url = PATH_PARAM.sub(r"{\1}", gateway.ROUTES.url(route))
        responses = paths[url][route.method.lower()]["responses"]
        for error in route.contract.methods[route.rpc].errors:
            assert any(f"`{error.code}`" in answer.get("description", "")
                       for answer in responses.values()), (route, error)
