"""The gateway's accept loop (mesh.http.server.accept_forever) outlives a lack of
file descriptors and caps the connections it holds."""
import errno
import socket

import eventlet
from eventlet.semaphore import Semaphore

from mesh.http.server import accept_forever


class Listener:
    """Accepts from a script: an OSError to raise, or a socket pair's server end."""

    def __init__(self, script):
        self.script, self.clients = list(script), []

    def accept(self):
        step = self.script.pop(0)
        if isinstance(step, OSError):
            raise step
        server_end, client_end = socket.socketpair()
        self.clients.append(client_end)
        return server_end, ("127.0.0.1", len(self.clients))


def test_running_out_of_descriptors_pauses_accepting_and_never_ends_it():
    listener = Listener([OSError(errno.EMFILE, "Too many open files"), "ok",
                         OSError(errno.ECONNABORTED, "aborted"), "ok"])
    served = []
    accept_forever(listener, lambda sock, address: served.append(address), Semaphore(10),
                   spawn=lambda fn: fn(), accepting=lambda: bool(listener.script))
    assert served == [("127.0.0.1", 1), ("127.0.0.1", 2)]


def test_a_connection_beyond_the_cap_is_answered_503_and_closed():
    listener = Listener(["ok", "ok", "ok"])
    held = eventlet.event.Event()
    served = []

    def serve(sock, address):
        served.append(address)
        held.wait()

    accept_forever(listener, serve, Semaphore(2), spawn=eventlet.spawn,
                   accepting=lambda: bool(listener.script))
    eventlet.sleep(0)
    third = listener.clients[2]
    answer = third.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"too many connections" in answer
    assert third.recv(10) == b""  # closed
    assert len(served) == 2
    held.send()
