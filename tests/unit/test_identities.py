"""Broker identities without a broker: each process's URI and password, and
what each identity's grant lets it touch (mesh.ops.grants)."""
import os
import re
import stat

import pytest

from mesh.messaging.identities import as_identity, identity_uri, password
from mesh.ops.grants import grants, service_grant
from mesh.runtime.serve import container_config
from mesh.testing import load_test_config

UUID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.fixture
def config(tmp_path):
    return load_test_config("config.yaml", MESH_DATA_DIR=tmp_path, BROKER_IDENTITIES="true",
                            BROKER_PASSWORD_ORDERS="orders password 123/@:")


def allowed(pattern, name):
    return re.search(pattern, name) is not None  # as RabbitMQ matches (unanchored)


def test_a_service_connects_as_its_own_user_on_every_broker_of_the_list(config):
    config["AMQP_URI"] = "amqps://admin:secret@one:5671/shop;amqps://two/shop"
    assert identity_uri(config, "orders") == (
        "amqps://mesh-orders:orders%20password%20123%2F%40%3A@one:5671/shop;"
        "amqps://mesh-orders:orders%20password%20123%2F%40%3A@two/shop")
    made = container_config(config, "orders")
    assert made["AMQP_URI"] == identity_uri(config, "orders")
    assert made["DECLARE_EVENT_EXCHANGES"] is False


def test_without_identities_everyone_is_amqp_uris_user(config):
    config["BROKER_IDENTITIES"] = False
    assert as_identity(config, "orders") is config
    made = container_config(config, "orders")
    assert made["AMQP_URI"] == config["AMQP_URI"] and made["DECLARE_EVENT_EXCHANGES"]


def test_a_development_password_is_made_once_and_private(config):
    first = password(config, "inventory")
    assert len(first) >= 32 and password(config, "inventory") == first
    path = os.path.join(config["MESH_DATA_DIR"], "broker_password_inventory")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert password(config, "payments") != first
    assert password(config, "orders") == "orders password 123/@:"


def test_orders_may_publish_only_what_its_contract_says(config):
    grant = grants(config)["orders"]
    for exchange in ("nameko-rpc", "orders.events", "orders.queues"):
        assert allowed(grant.write, exchange)
    for exchange in ("inventory.events", "accounts.events", "amq.default", "inventory.queues",
                     "amq.topic"):
        assert not allowed(grant.write, exchange)
    rpc_write, rpc_read = grant.topics["nameko-rpc"]
    assert allowed(rpc_write, "inventory.get_prices") and allowed(rpc_write, UUID)
    for key in ("accounts.get_user", "inventory.get_prices.x", "inventory.*", "#"):
        assert not allowed(rpc_write, key)
    assert allowed(rpc_read, "orders.*") and not allowed(rpc_read, "accounts.*")
    events_write, _ = grant.topics["orders.events"]
    assert allowed(events_write, "order_created") and not allowed(events_write, "stock_reserved")


def test_orders_configures_only_its_own_queues_and_no_exchange(config):
    grant = grants(config)["orders"]
    for queue in ("rpc-orders", f"rpc.reply-orders-{UUID}",
                  "evt-inventory-stock_reserved--orders.on_stock_reserved",
                  "evt-inventory-stock_reserved--orders.on_stock_reserved.delay.1000",
                  "evt-inventory-stock_reserved--orders.on_stock_reserved.dlq"):
        assert allowed(grant.configure, queue) and allowed(grant.read, queue)
    for name in ("rpc-inventory", f"rpc.reply-gateway-{UUID}", "nameko-rpc", "orders.events",
                 "orders.queues", "evt-orders-order_created--inventory.on_order_created",
                 "rpc-orders-x"):
        assert not allowed(grant.configure, name)
    assert allowed(grant.read, "inventory.events") and not allowed(grant.read, "accounts.events")


def test_the_gateway_calls_and_serves_no_rpc_and_the_operator_may_do_anything(config):
    gateway = grants(config)["gateway"]
    write, read = gateway.topics["nameko-rpc"]
    assert allowed(write, "orders.create_order") and not allowed(write, UUID)
    # only its routes' calls and the token check, not all of those contracts
    assert allowed(write, "accounts.get_access") and allowed(write, "inventory.restock")
    for internal in ("inventory.get_prices", "inventory.reserve_stock", "inventory.commit_stock"):
        assert not allowed(write, internal)
    assert allowed(read, UUID) and not allowed(read, "gateway.*")
    assert not allowed(gateway.configure, "rpc-gateway")
    assert grants(config)["operator"].write == ".*"


def test_the_gateway_hears_accounts_changes_on_queues_of_its_own(config):
    gateway = grants(config)["gateway"]
    mine = "evt-accounts-user_disabled--gateway.forget_user-" + "0f" * 16
    assert allowed(gateway.configure, mine) and allowed(gateway.read, mine)
    assert not allowed(gateway.configure, "evt-accounts-user_deleted--notifications."
                                          "on_user_deleted")
    assert allowed(gateway.read, "accounts.events")
    _, bind = gateway.topics["accounts.events"]
    assert allowed(bind, "user_disabled") and not allowed(bind, "user_registered")


def test_a_broadcast_handlers_instance_queues_are_its_own(config):
    from nameko.events import BROADCAST

    from contracts import orders
    from mesh.messaging.handlers import handle_event

    class Watcher:
        name = "watcher"

        @handle_event(orders.CONTRACT, "order_created", handler_type=BROADCAST)
        def seen(self, event):
            pass

    grant = service_grant(config, "watcher", Watcher)
    lasting = "evt-orders-order_created--watcher.seen"
    instance = f"{lasting}-{'a' * 32}"
    for queue in (lasting + ".dlq", instance, instance + ".delay.5000"):
        assert allowed(grant.configure, queue)
    assert not allowed(grant.configure, lasting + "-x.dlq")
    assert grant.topics["orders.events"] == ("^$", "^(order_created)$")
