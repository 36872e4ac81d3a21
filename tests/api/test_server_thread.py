"""The in-process server (the demo's and the tests') answers without waiting on the client's delayed ACK."""

from __future__ import annotations

import socket

from tests.support import World


def test_server_thread_connections_have_tcp_nodelay(world: World) -> None:
    # uvicorn writes an answer's headers and body separately; with Nagle's algorithm on, the body
    # waited about 40 ms for the client's delayed ACK, on every request.
    client = world.fixture("fx-1")
    assert client.whoami()["fixture_id"] == "fx-1"
    connections = list(world.server.server.server_state.connections)
    assert connections
    for protocol in connections:
        sock = protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
