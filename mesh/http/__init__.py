"""HTTP machinery for a thin gateway: routes, auth, JSON errors, request ids."""
from mesh.http.entrypoints import api, operation
from mesh.http.errors import HttpError
from mesh.http.routes import ADMIN, PUBLIC, USER, Route, RouteTable

__all__ = ["api", "operation", "HttpError", "Route", "RouteTable", "PUBLIC", "USER",
           "ADMIN"]
