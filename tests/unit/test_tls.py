"""TLS to the broker: AMQP_SSL is checked, and reaches the platform's own
connections as well as nameko's (no TLS broker needed: a listener on loopback
reads what a client says first)."""
import json
import socket
import ssl
import threading

import certifi
import pytest

from mesh.core.config import ConfigError
from mesh.messaging.identities import identity_uri
from mesh.messaging.tls import broker_connection, tls_options, use_tls
from mesh.runtime.serve import container_config
from mesh.testing import load_test_config


def load(**env):
    return load_test_config("config.yaml", **env)


def tls(**options):
    return json.dumps(options)


def test_tls_options_are_checked_and_empty_ones_left_out():
    assert load()["AMQP_SSL"] is None
    config = load(AMQP_SSL=tls(ca_certs=certifi.where(), cert_reqs="required", keyfile=""))
    assert config["AMQP_SSL"] == {"ca_certs": certifi.where(), "cert_reqs": ssl.CERT_REQUIRED}
    assert load(AMQP_SSL="{ca_certs: %s}" % certifi.where())["AMQP_SSL"] == {
        "ca_certs": certifi.where()}  # YAML too
    for options, error in [
            (tls(ca_certs="/no/such.pem"), "ca_certs: /no/such.pem cannot be read"),
            (tls(cert_reqs="sometimes"), "cert_reqs must be required"),
            (tls(keyfile=certifi.where()), "keyfile needs certfile"),
            (tls(ca_cert=certifi.where()), "unknown option.s. ca_cert"),
            ("/etc/ca.pem", "Not a valid mapping")]:
        with pytest.raises(ConfigError, match=f"AMQP_SSL: {error}"):
            load(AMQP_SSL=options)


def first_bytes_of(connect):
    """What a client sends first to a listener that then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    heard = []

    def serve():
        peer, _ = listener.accept()
        heard.append(peer.recv(8))
        peer.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with pytest.raises(Exception):  # it hung up: no broker there
        connect(listener.getsockname()[1])
    thread.join(5)
    listener.close()
    return heard[0]


def test_the_platforms_connections_speak_tls_to_a_broker_amqp_ssl_names(tmp_path):
    config = load(AMQP_SSL=tls(ca_certs=certifi.where()), MESH_DATA_DIR=tmp_path,
                  BROKER_IDENTITIES="true")
    port_holder = {}

    def connect(port):
        port_holder["uri"] = config["AMQP_URI"] = f"amqp://guest:guest@127.0.0.1:{port}/"
        use_tls(config)
        # a service's own identity, on the same broker, gets the same options
        with broker_connection(identity_uri(config, "orders"), connect_timeout=2,
                               transport_options={"max_retries": 0}) as connection:
            connection.connect()

    hello = first_bytes_of(connect)
    assert hello[:1] == b"\x16"  # a TLS handshake record, not b"AMQP"
    assert tls_options(port_holder["uri"]) == config["AMQP_SSL"]
    assert container_config(config, "orders")["AMQP_SSL"] == config["AMQP_SSL"]  # nameko's
    config["AMQP_SSL"] = None
    use_tls(config)
    assert tls_options(port_holder["uri"]) is None


def test_without_amqp_ssl_a_connection_is_plain_amqp():
    def connect(port):
        with broker_connection(f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout=2,
                               transport_options={"max_retries": 0}) as connection:
            connection.connect()

    assert first_bytes_of(connect).startswith(b"AMQP")
