"""What `mesh up` and `mesh serve` refuse to start with (a broker that will never
take their connections as configured), and what they wait for instead."""
import eventlet
import pytest

from mesh.messaging.health import broker_refusal
from mesh.testing import free_port


@pytest.fixture
def server():
    """A TCP server on loopback that answers each connection with `reply` (bytes)
    and closes it; yields a function that sets the reply and returns the port."""
    listener = eventlet.listen(("127.0.0.1", 0))
    said = {"reply": b""}

    def serve():
        while True:
            client, _ = listener.accept()
            client.recv(1024)
            if said["reply"]:
                client.sendall(said["reply"])
            client.close()

    thread = eventlet.spawn(serve)

    def answering(reply):
        said["reply"] = reply
        return listener.getsockname()[1]

    yield answering
    thread.kill()
    listener.close()


def test_plain_amqp_to_a_port_that_drops_it_is_refused_as_a_tls_port(server):
    port = server(b"")  # what a TLS listener does with an AMQP header
    refusal = broker_refusal(f"amqp://u:p@127.0.0.1:{port}/", timeout=2)
    assert "needs an amqps:// AMQP_URI" in refusal


def test_tls_to_a_plain_amqp_port_is_refused(server):
    port = server(b"AMQP\x00\x00\x09\x01")  # a plain broker's answer to a TLS hello
    refusal = broker_refusal(f"amqps://u:p@127.0.0.1:{port}/", timeout=2)
    assert refusal.startswith("TLS with the broker failed") and "AMQP_SSL" in refusal


def test_a_tls_handshake_cut_short_or_no_broker_at_all_is_waited_for(server):
    port = server(b"")  # a node restarting mid-handshake
    assert broker_refusal(f"amqps://u:p@127.0.0.1:{port}/", timeout=2) is None
    assert broker_refusal(f"amqp://u:p@127.0.0.1:{free_port()}/", timeout=2) is None
