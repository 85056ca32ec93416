"""The AsyncAPI 3 document: valid against AsyncAPI's own JSON schema (from the
npm registry, `@asyncapi/specs`), and true to the contracts and the services."""
import json
import shutil
import subprocess
import tarfile

import jsonschema
import pytest

import contracts
from mesh.core.config import load_config
from mesh.runtime.asyncapi import asyncapi_document, events_page
from mesh.core.services import import_service
from tests.unit.test_deploy import REPO

SPECS = "@asyncapi/specs@6.11.1"


@pytest.fixture(scope="module")
def asyncapi_schema(tmp_path_factory):
    if shutil.which("npm") is None:
        pytest.skip(f"npm is needed to fetch {SPECS}, AsyncAPI's JSON schemas")
    folder = tmp_path_factory.mktemp("asyncapi")
    packed = subprocess.run(["npm", "pack", SPECS, "--pack-destination", str(folder)],
                            capture_output=True, text=True, timeout=120, check=True)
    with tarfile.open(folder / packed.stdout.strip().splitlines()[-1]) as archive:
        member = archive.extractfile("package/schemas/3.0.0-without-$id.json")
        return json.load(member)


@pytest.fixture(scope="module")
def document():
    config = load_config(str(REPO / "config.yaml"))
    classes = {name: import_service(path) for name, path in config["SERVICES"].items()}
    return asyncapi_document(contracts.CONTRACTS, classes)


def test_the_document_is_valid_asyncapi_3(document, asyncapi_schema):
    errors = list(jsonschema.Draft7Validator(asyncapi_schema).iter_errors(document))
    assert errors == [], [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]
    broken = dict(document, operations={"x": {"action": "publish",
                                              "channel": {"$ref": "#/channels/x"}}})
    assert list(jsonschema.Draft7Validator(asyncapi_schema).iter_errors(broken))


def test_every_declared_event_has_its_channel_publisher_and_consumers(document):
    operations = document["operations"]
    for service, contract in contracts.CONTRACTS.items():
        for event in contract.events.values():
            key = f"{service}.{event.type}"
            channel = document["channels"][key]
            assert channel["address"] == event.type
            assert channel["bindings"]["amqp"]["exchange"]["name"] == f"{service}.events"
            assert operations[f"{service}.publish.{event.type}"]["action"] == "send"
            payload = document["components"]["messages"][key]["payload"]
            assert payload["properties"]["version"] == {"const": event.version}
    # the saga, as the services wire it: who consumes what
    receivers = {name: op["channel"]["$ref"].rsplit("/", 1)[1]
                 for name, op in operations.items() if op["action"] == "receive"
                 and not name.startswith("rpc.")}
    assert receivers["inventory.on_order_created"] == "orders.order_created"
    assert receivers["payments.on_payment_requested"] == "orders.payment_requested"
    assert receivers["orders.on_payment_captured"] == "payments.payment_captured"


def test_a_real_event_matches_its_message_schema(document):
    payload = document["components"]["messages"]["orders.order_created"]["payload"]
    event = {"event_id": "6f1c1b6e-3c9f-4a57-9a55-2b1de0d4f8a1", "type": "order_created",
             "version": 1, "occurred_at": "2026-11-27T07:00:00Z", "correlation_id": None,
             "data": {"order_id": 7, "user_id": 3, "total_cents": 2500,
                      "lines": [{"product_id": 1, "quantity": 2}]}}
    resolver = {"components": document["components"], **payload}
    jsonschema.validate(event, resolver)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event, "version": 2}, resolver)


def test_every_rpc_method_is_a_request_with_a_reply(document):
    for service, contract in contracts.CONTRACTS.items():
        for name in contract.methods:
            operation = document["operations"][f"rpc.{service}.{name}"]
            assert operation["reply"]["address"]["location"] == "$message.header#/reply_to"
            assert document["channels"][f"rpc.{service}.{name}"]["address"] == \
                f"{service}.{name}"


def test_the_events_page_shows_each_event_and_who_handles_it(document):
    page = events_page(document)
    assert "order_created v1" in page and "inventory handles order_created" in page
    assert "<script" not in page
