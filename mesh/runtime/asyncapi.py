"""The AsyncAPI 3 document of the mesh, from the same contracts that check every
event and RPC call, the page that shows it, and the docs' events reference
(Markdown, built with the docs).

Every event a contract declares is a channel (its routing key on the
publisher's `<service>.events` topic exchange) with its message (the envelope,
`data` by its schema and `version` fixed), an operation for the service that
publishes it and one for each handler that consumes it, read off the service
classes in config's SERVICES. Every RPC method is a channel on nameko's
`nameko-rpc` exchange, received by its service and answered on the caller's
reply queue. Schemas come from marshmallow through apispec, as OpenAPI's do,
made plain JSON Schema (`nullable` becomes a `null` type).
"""
import html
import json
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc

from contracts.base import EventEnvelope
from mesh.messaging.broadcasts import InstanceEventHandler
from mesh.messaging.topology import lasting_queue
from mesh.core.services import entrypoints_of, import_service

__all__ = ["asyncapi_document", "AsyncApi", "events_page", "events_reference"]

RPC_EXCHANGE = {"name": "nameko-rpc", "type": "topic", "durable": True,
                "autoDelete": False, "vhost": "/"}
AMQP_BINDING_VERSION = "0.3.0"


def _json_schema(value):
    """apispec's OpenAPI 3.0 schema made JSON Schema: `nullable` → a null type."""
    if isinstance(value, list):
        return [_json_schema(item) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: _json_schema(item) for key, item in value.items()}
    if value.pop("nullable", False):
        if "type" in value:
            value["type"] = [value["type"], "null"]
        elif "$ref" in value:
            value = {"oneOf": [{"$ref": value.pop("$ref")}, {"type": "null"}], **value}
    return value


class _Schemas:
    """marshmallow schemas → JSON Schema, nested ones under components/schemas."""

    def __init__(self):
        self.plugin = MarshmallowPlugin()
        self.spec = APISpec("mesh", "1", "3.0.3", plugins=[self.plugin])

    def __call__(self, schema):
        return _json_schema(self.plugin.converter.schema2jsonschema(schema))

    def components(self):
        return _json_schema(self.spec.to_dict().get("components", {}).get("schemas", {}))


def _envelope(schemas, event):
    """The wire message of `event`: the envelope with its `data` and `version`."""
    envelope = schemas(EventEnvelope)
    envelope["properties"]["data"] = schemas(event.data)
    envelope["properties"]["type"] = {"const": event.type}
    envelope["properties"]["version"] = {"const": event.version}
    return envelope


def _consumers(service_classes):
    """`{(source, event type): [(operation name, service, summary)]}`."""
    found = {}
    for service, service_cls in service_classes.items():
        for method, entrypoint in entrypoints_of(service_cls):
            if isinstance(entrypoint, EventHandler):  # the platform's kinds alike
                key = (entrypoint.source_service, entrypoint.event_type)
                queue = lasting_queue(*key, service, method, entrypoint.handler_type)
                if isinstance(entrypoint, InstanceEventHandler):
                    # one method may hear several events: an operation each
                    name = f"{service}.{method}.{entrypoint.event_type}"
                    how = (f"every instance hears it on a queue of its own, "
                           f"{queue}-<instance>; not retried")
                else:
                    name = f"{service}.{method}"
                    how = (f"queue {queue}: idempotent (an inbox), retried, then "
                           f"dead-lettered to {queue}.dlq")
                found.setdefault(key, []).append(
                    (name, service, f"{entrypoint.handler_type} handler {service}.{method}, "
                                    f"{how}"))
    return found


def _rpc_served(service_cls):
    return {method for method, entrypoint in entrypoints_of(service_cls)
            if isinstance(entrypoint, Rpc)}


def asyncapi_document(contracts, service_classes, title="nameko-mesh", version="1"):
    """A dict: the AsyncAPI 3.0 document of `contracts` (`{service: contract}`),
    whose consumers and RPC methods are read off `service_classes`."""
    schemas = _Schemas()
    channels, operations, messages = {}, {}, {}
    consumers = _consumers(service_classes)
    for service, contract in sorted(contracts.items()):
        served = _rpc_served(service_classes[service]) if service in service_classes \
            else set(contract.methods)
        for event in contract.events.values():
            key = f"{service}.{event.type}"
            messages[key] = {
                "name": event.type, "title": f"{event.type} v{event.version}",
                "summary": event.doc or f"{service} announces {event.type}",
                "contentType": "application/json", "payload": _envelope(schemas, event)}
            channels[key] = {
                "address": event.type,
                "title": f"{event.type} on {service}.events",
                "messages": {event.type: {"$ref": f"#/components/messages/{key}"}},
                "bindings": {"amqp": {
                    "is": "routingKey", "bindingVersion": AMQP_BINDING_VERSION,
                    "exchange": {"name": f"{service}.events", "type": "topic",
                                 "durable": True, "autoDelete": False, "vhost": "/"}}}}
            message_ref = [{"$ref": f"#/channels/{key}/messages/{event.type}"}]
            operations[f"{service}.publish.{event.type}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{key}"},
                "title": f"{service} publishes {event.type}",
                "summary": "recorded in its outbox with the change it reports, "
                           "published once the broker confirms",
                "messages": message_ref}
            for name, consumer, summary in consumers.get((service, event.type), []):
                operations[name] = {
                    "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                    "title": f"{consumer} handles {event.type}", "summary": summary,
                    "messages": message_ref}
        for name, method in sorted(contract.methods.items()):
            if name not in served:
                continue
            key = f"rpc.{service}.{name}"
            messages[f"{key}.request"] = {
                "name": f"{name}_request", "title": f"{service}.{name} arguments",
                "summary": method.doc or f"call {service}.{name}",
                "contentType": "application/json", "payload": {
                    "type": "object", "required": ["args", "kwargs"], "properties": {
                        "args": {"type": "array", "maxItems": 0},
                        "kwargs": schemas(method.args)}}}
            messages[f"{key}.reply"] = {
                "name": f"{name}_reply", "title": f"{service}.{name} result",
                "summary": "the result, or the contract error (by name) it raised: " +
                           (", ".join(e.__name__ for e in method.errors) or "none"),
                "contentType": "application/json", "payload": {
                    "type": "object", "required": ["result", "error"], "properties": {
                        "result": {"oneOf": [schemas(method.result), {"type": "null"}]},
                        "error": {"oneOf": [{"type": "null"}, {"type": "object"}]}}}}
            channels[key] = {
                "address": f"{service}.{name}",
                "title": f"{service}.{name} on nameko-rpc (queue rpc-{service})",
                "messages": {"request": {"$ref": f"#/components/messages/{key}.request"}},
                "bindings": {"amqp": {"is": "routingKey", "exchange": RPC_EXCHANGE,
                                      "bindingVersion": AMQP_BINDING_VERSION}}}
            channels[f"{key}.reply"] = {
                "address": None, "title": "the caller's own reply queue",
                "messages": {"reply": {"$ref": f"#/components/messages/{key}.reply"}}}
            operations[f"rpc.{service}.{name}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                "title": f"{service} answers {name}",
                "messages": [{"$ref": f"#/channels/{key}/messages/request"}],
                "reply": {"address": {"location": "$message.header#/reply_to"},
                          "channel": {"$ref": f"#/channels/{key}.reply"},
                          "messages": [{"$ref": f"#/channels/{key}.reply/messages/reply"}]}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version,
                 "description": "The mesh's events and RPC methods, from its contracts: "
                                "every event carries the envelope {event_id, type, "
                                "version, occurred_at, correlation_id, data}."},
        "defaultContentType": "application/json",
        "channels": channels, "operations": operations,
        "components": {"messages": messages, "schemas": schemas.components()}}


class AsyncApi(DependencyProvider):
    """The document of the contracts of config's SERVICES, built once per container."""

    def __init__(self, contracts):
        self.contracts = contracts

    def setup(self):
        classes = {name: import_service(path) for name, path in
                   self.container.config["SERVICES"].items()}
        self.document = asyncapi_document(
            {name: c for name, c in self.contracts.items() if name in classes}, classes,
            title="nameko-mesh events and RPC")

    def get_dependency(self, worker_ctx):
        return self.document


def events_page(document):
    """The document as a page: each event with its publisher, consumers and
    payload, then each RPC method."""
    operations = document["operations"].values()
    rows = []
    for key, channel in document["channels"].items():
        if channel["address"] is None:
            continue
        (message,) = channel["messages"].values()
        body = document["components"]["messages"][message["$ref"].rsplit("/", 1)[1]]
        who = [op["title"] for op in operations
               if op["channel"]["$ref"] == f"#/channels/{key}"]
        rows.append(
            f"<section><h2>{html.escape(body['title'])}</h2>"
            f"<p>{html.escape(channel['title'])}: {html.escape(body['summary'])}</p>"
            f"<ul>{''.join(f'<li>{html.escape(w)}</li>' for w in who)}</ul>"
            f"<pre>{html.escape(json.dumps(body['payload'], indent=2))}</pre></section>")
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(document['info']['title'])}</title></head><body>"
            f"<h1>{html.escape(document['info']['title'])}</h1>"
            f"<p>{html.escape(document['info']['description'])} The document: "
            f"<a href=\"/api/v1/asyncapi.json\">/api/v1/asyncapi.json</a> "
            f"(AsyncAPI 3.0).</p>{''.join(rows)}</body></html>")
    return page


def _cell(text):
    """Prose made safe in a Markdown table cell or list item: on one line, `|`
    escaped and `<`, `>`, `&` as text (not HTML) outside its code spans."""
    parts = re.split(r"(`[^`]*`)", " ".join(str(text).split()))
    return "".join(_code(part[1:-1]) if part.startswith("`") and len(part) > 1 else
                   html.escape(part, quote=False).replace("|", "\\|") for part in parts)


def _code(value):
    """`value` as inline code in a table cell: a code span, or (holding a `|` or a
    backtick, which a code span cannot escape) <code> with its punctuation as
    character references, which Markdown leaves alone."""
    text = value if isinstance(value, str) else json.dumps(value)
    if "|" not in text and "`" not in text:
        return f"`{text}`"
    return "<code>" + "".join(c if c.isalnum() or c == " " else f"&#{ord(c)};"
                              for c in text) + "</code>"


def _json_type(value):
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            type(None): "null", list: "array", dict: "object"}[type(value)]


def _notes(schema):
    """What else a JSON Schema says of a value, as short phrases."""
    notes = []
    if "description" in schema:
        notes.append(_cell(schema["description"]))
    if "const" in schema:
        notes.append(f"always {_code(schema['const'])}")
    if "format" in schema:
        notes.append(f"format {_code(schema['format'])}")
    if "enum" in schema:
        notes.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
    if "pattern" in schema:
        notes.append(f"matches {_code(schema['pattern'])}")
    for low, high, unit in (("minimum", "maximum", ""), ("minLength", "maxLength", " characters"),
                            ("minItems", "maxItems", " items")):
        if low in schema and high in schema:
            notes.append(f"{schema[low]} to {schema[high]}{unit}")
        elif low in schema:
            notes.append(f"at least {schema[low]}{unit}")
        elif high in schema:
            notes.append(f"at most {schema[high]}{unit}")
    if "default" in schema:
        notes.append(f"default {_code(schema['default'])}")
    return notes


def _field_rows(schema, components, prefix="", seen=()):
    """`(name, JSON type, required, nullable, notes)` of each property of the
    object `schema`, then of the objects nested in it (`lines[].quantity`)."""
    required = set(schema.get("required", ()))
    for name, value in schema.get("properties", {}).items():
        nullable, nested = False, None
        if "oneOf" in value and {"type": "null"} in value["oneOf"]:
            (value,) = [v for v in value["oneOf"] if v != {"type": "null"}] or [{}]
            nullable = True
        kind = value.get("type")
        if isinstance(kind, list):
            nullable = nullable or "null" in kind
            kind = " or ".join(k for k in kind if k != "null")
        path, shown = f"{prefix}{name}", kind
        if "$ref" in value:
            ref = value["$ref"].rsplit("/", 1)[1]
            shown, nested = f"object ({ref})", (components.get(ref, {}), f"{path}.", ref)
        elif kind == "array":
            items = value.get("items", {})
            if "$ref" in items:
                ref = items["$ref"].rsplit("/", 1)[1]
                shown, nested = f"array of {ref}", (components.get(ref, {}), f"{path}[].", ref)
            elif items.get("properties"):
                shown, nested = "array of objects", (items, f"{path}[].", None)
            else:
                shown = f"array of {items.get('type', 'any')}"
        elif kind == "object" and value.get("properties"):
            nested = (value, f"{path}.", None)
        elif kind is None:
            shown = _json_type(value["const"]) if "const" in value else "any"
        yield (path, shown, name in required, nullable, _notes(value))
        if nested and nested[2] not in seen:  # a schema nested in itself is shown once
            yield from _field_rows(nested[0], components, nested[1],
                                   seen + ((nested[2],) if nested[2] else ()))


def _fields_table(schema, components, notes=None):
    rows = ["| field | type | required | nullable | notes |", "|---|---|---|---|---|"]
    for name, kind, required, nullable, said in _field_rows(schema, components):
        said = (notes or {}).get(name, "; ".join(said))
        rows.append(f"| {_code(name)} | {_cell(kind)} | {'yes' if required else 'no'} | "
                    f"{'yes' if nullable else 'no'} | {said} |")
    return "\n".join(rows)


def events_reference(document=None):
    """The events of `document` (by default the mesh's own, from the contracts and
    the service classes config.yaml's SERVICES names) as Markdown: the envelope,
    then a section per publishing service and, for each event it publishes, its
    exchange and routing key, the handlers that consume it and its `data`'s fields.
    Sorted, so the same contracts always give the same text."""
    if document is None:
        import pathlib

        from contracts import CONTRACTS
        from mesh.core.config import read_yaml

        # SERVICES as written: the page must not hang on the builder's environment
        config = read_yaml(str(pathlib.Path(__file__).resolve().parents[2] / "config.yaml"))
        classes = {name: import_service(path) for name, path in config["SERVICES"].items()}
        document = asyncapi_document(
            {name: c for name, c in CONTRACTS.items() if name in classes}, classes)
    components = document["components"]
    events = []  # (service, exchange, routing key, channel key, message)
    for key, channel in document["channels"].items():
        if key.startswith("rpc.") or channel["address"] is None:
            continue
        (ref,) = channel["messages"].values()
        message = components["messages"][ref["$ref"].rsplit("/", 1)[1]]
        exchange = channel["bindings"]["amqp"]["exchange"]["name"]
        events.append((exchange.rsplit(".", 1)[0], exchange, channel["address"], key, message))
    events.sort(key=lambda e: (e[0], e[2]))
    if not events:
        return "No contract declares an event."
    out = []
    envelope = events[0][4]["payload"]
    out += ["## The envelope", "",
            "Every event is this JSON object; `type` and `version` are the event's, "
            "`data` is its own fields, listed with each event below.", "",
            _fields_table({**envelope, "properties": {
                **envelope["properties"], "type": {"type": "string"},
                "version": {"type": "integer"}, "data": {"type": "object"}}},
                components["schemas"],
                notes={"type": "the event's type, also its routing key",
                       "version": "the version of the event's `data` schema",
                       "data": "the event's own fields (see each event)"}), ""]
    service = None
    for publisher, exchange, routing_key, key, message in events:
        if publisher != service:
            service = publisher
            out += [f"## {publisher}", "",
                    f"Published on the topic exchange {_code(exchange)}, each event "
                    f"under its type as the routing key.", ""]
        handlers = sorted(
            (name, op) for name, op in document["operations"].items()
            if op["action"] == "receive" and op["channel"]["$ref"] == f"#/channels/{key}")
        out += [f"### {routing_key}", "", _cell(message["summary"]), "",
                f"- **version** {message['title'].rsplit(' v', 1)[1]}",
                f"- **routing key** {_code(routing_key)} on {_code(exchange)}"]
        if not handlers:
            out.append("- **handled by** no service")
        else:
            out.append("- **handled by**")
            for name, op in handlers:
                handler = name.removesuffix(f".{routing_key}")
                summary = op.get("summary", "")
                kind, _, how = summary.partition(f" handler {handler}, ")
                # its queue's names as code: `evt-orders-order_created--...`
                how = re.sub(r"\bevt-[\w.<>-]+\w>?", lambda q: f"`{q[0]}`",
                             f"{kind} handler, {how}" if how else summary)
                out.append(f"    - {_code(handler)} — {_cell(how)}")
        data = message["payload"]["properties"]["data"]
        out += ["", "Its `data`:" if data.get("properties") else "Its `data` has no fields.",
                ""]
        if data.get("properties"):
            out += [_fields_table(data, components["schemas"]), ""]
    return "\n".join(out).rstrip() + "\n"
