"""Loaded by every Python process the test suite starts (tests/conftest.py puts this folder on PYTHONPATH):
connections to anything but loopback are refused, so a code path that reaches for the network fails its
test here instead of working on a developer's machine and failing on a user's.

Unix sockets and loopback addresses (the viewer, local servers) are allowed; resolving a host name other
than localhost is refused as well.
"""

from __future__ import annotations

import ipaddress
import socket

REFUSAL = "network access refused by the aenerf_ns test suite (only loopback is allowed)"
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_loopback(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).split("%")[0]
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _numeric(host) -> bool:
    try:
        ipaddress.ip_address(str(host).split("%")[0])
        return True
    except ValueError:
        return False


def _checked(address) -> None:
    if isinstance(address, tuple) and not _is_loopback(address[0]):
        raise ConnectionRefusedError(f"{REFUSAL}: {address[0]}:{address[1]}")


def install() -> None:
    """Patch socket connections and name lookups (idempotent)."""
    if getattr(socket, "_aenerf_offline", False):
        return
    connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address):
        _checked(address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        _checked(address)
        return connect_ex(self, address)

    def guarded_sendto(self, data, *args):
        _checked(args[-1])
        return sendto(self, data, *args)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not (_is_loopback(host) or _numeric(host)):
            raise socket.gaierror(socket.EAI_NONAME, f"{REFUSAL}: lookup of {host}")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.socket.sendto = guarded_sendto
    socket.getaddrinfo = guarded_getaddrinfo
    socket._aenerf_offline = True


install()
