"""The service classes SERVICES names, and what they declare."""
import importlib

__all__ = ["import_service", "entrypoints_of"]


def import_service(path):
    """`package.module:Class` → the class."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def entrypoints_of(service_cls):
    """`(attribute, entrypoint)` for each entrypoint a service class declares."""
    for attr in dir(service_cls):
        for entrypoint in getattr(getattr(service_cls, attr), "nameko_entrypoints", ()):
            yield attr, entrypoint
