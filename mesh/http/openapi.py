"""The OpenAPI 3 document of a route table, built with apispec from the same
contract schemas that validate requests, and the /docs page that renders it
with Swagger UI's files from an installed package (no CDN: it works offline)."""
import mimetypes
import os

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Response

from mesh.http.errors import ErrorTable
from mesh.http.routes import ADMIN, PATH_PARAM, PUBLIC

__all__ = ["openapi_document", "OpenApi", "docs_page", "docs_asset"]

# What the HTTP layer itself answers, whatever the route calls; the codes of
# contract errors come from their classes through the gateway's ErrorTable.
HTTP_CODES = {
    400: "malformed_json", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "rate_limited", 500: "internal_error", 503: "service_unavailable",
    504: "upstream_timeout",
}


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    request_id = fields.String(required=True)
    fields = fields.Dict(metadata={"description": "with a 422: messages by field"})


class ErrorEnvelope(Schema):
    error = fields.Nested(ErrorBody, required=True)


def _error_codes(route, errors):
    """`{status: codes}`: the errors a route can answer, with every code each carries."""
    statuses = {404, 429, 500, 503, 504}
    if route.has_body:
        statuses |= {400, 413, 415, 422}
    if route.access != PUBLIC:
        statuses |= {401}
    if route.access == ADMIN:
        statuses |= {403}
    if route.loader.fields and not route.has_body:
        statuses.add(422)
    found = {status: {HTTP_CODES[status]} for status in statuses}
    for error in route.contract.methods[route.rpc].errors:
        mapped = errors.status_of(error)
        if mapped is not None:
            status, code = mapped
            found.setdefault(status, set()).add(code)
    return found


def _error_response(codes):
    return {"description": ", ".join(f"`{code}`" for code in sorted(codes)),
            "content": {"application/json": {"schema": "Error"}}}


def openapi_document(routes, errors, title="nameko-mesh", version="1"):
    """A dict: the OpenAPI 3.0 document of every route in `routes`; `errors` is the
    gateway's status table of contract errors (see `ErrorTable`)."""
    errors = ErrorTable(errors)
    spec = APISpec(title=title, version=version, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"})
    spec.components.schema("Error", schema=ErrorEnvelope)
    paths = {}
    for route in routes:
        method = route.contract.methods[route.rpc]
        schema = route.schema
        supplied = route.supplied_fields()
        parameters = [{"in": "path", "name": name, "required": True,
                       "schema": {"type": "integer"}} for name in route.path_params]
        parameters += [{"in": "header", "name": header, "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
                       for header in route.headers.values()]
        operation = {
            "operationId": route.target.replace(".", "_"),
            "summary": route.summary, "description": method.doc,
            "tags": [route.contract.service],
            "responses": {str(route.status): {"description": "No content"}
                          if route.status == 204 else {
                "description": "OK",
                "content": {"application/json": {"schema": method.result}}}},
        }
        operation["responses"].update({str(status): _error_response(codes) for status, codes
                                       in sorted(_error_codes(route, errors).items())})
        if route.has_body:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": schema(only=supplied)}}}
        elif supplied:
            parameters.append({"in": "query", "schema": schema(only=supplied)})
        if parameters:
            operation["parameters"] = parameters
        if route.access != PUBLIC:
            operation["security"] = [{"bearer": []}]
        url = PATH_PARAM.sub(r"{\1}", routes.url(route))
        paths.setdefault(url, {})[route.method.lower()] = operation
    for url, operations in paths.items():
        spec.path(path=url, operations=operations)
    # /metrics is not here: it is served on the operations port, never this one
    json_body = {"application/json": {"schema": {}}}
    for url, summary, responses in (
            ("/health", "Up while the process runs",
             {"200": {"description": "OK", "content": json_body}}),
            ("/ready", "Whether the gateway can serve (its broker, Redis when set); "
             "`checks` names each service `ok` or `no instance`",
             {"200": {"description": "Ready", "content": json_body},
              "503": {"description": "Not ready: `checks` says what fails",
                      "content": json_body}})):
        spec.path(path=url, operations={"get": {
            "summary": summary, "tags": ["operations"], "responses": responses}})
    return spec.to_dict()


class OpenApi(DependencyProvider):
    """The document of a route table, built once per container."""

    def __init__(self, routes, errors, title="nameko-mesh API"):
        self.routes, self.errors, self.title = routes, errors, title

    def setup(self):
        self.document = openapi_document(self.routes, self.errors, self.title)

    def get_dependency(self, worker_ctx):
        return self.document


def _assets_dir():
    import swagger_ui_bundle

    return swagger_ui_bundle.swagger_ui_path


DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
# a file of its own, not inline, so a strict Content-Security-Policy can hold
INIT_JS = """window.ui = SwaggerUIBundle({url: "%s", dom_id: "#docs"});\n"""
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")


def docs_page(title):
    return Response(DOCS_PAGE.format(title=title), content_type="text/html; charset=utf-8")


def docs_asset(name, spec_url):
    """One of the few files /docs needs; None for anything else."""
    if name == "init.js":
        return Response(INIT_JS % spec_url, content_type="application/javascript")
    if name not in ASSETS:
        return None
    with open(os.path.join(_assets_dir(), name), "rb") as handle:
        body = handle.read()
    return Response(body, content_type=mimetypes.guess_type(name)[0],
                    headers={"Cache-Control": "public, max-age=86400"})
