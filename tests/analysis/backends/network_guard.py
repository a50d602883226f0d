"""A pytest helper that makes any network access other than to 127.0.0.1 fail and be recorded."""

from __future__ import annotations

import socket

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def block_network(monkeypatch) -> list[str]:
    """Patch sockets and name lookups so that any host but loopback raises OSError.

    Returns the list that records each blocked attempt, for the test to assert it is empty.
    """
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def is_loopback(address) -> bool:
        if isinstance(address, tuple) and address:
            return str(address[0]) in LOOPBACK_HOSTS
        # A Unix domain socket path stays on this machine.
        return isinstance(address, str | bytes)

    def connect(self, address):
        if not is_loopback(address):
            attempts.append(f"connect {address!r}")
            raise OSError(f"network access to {address!r} is blocked in this test")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not is_loopback(address):
            attempts.append(f"connect_ex {address!r}")
            raise OSError(f"network access to {address!r} is blocked in this test")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK_HOSTS:
            attempts.append(f"getaddrinfo {name!r}")
            raise socket.gaierror(f"name lookup of {name!r} is blocked in this test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts
