"""Moves the test process into a network namespace of its own whose only interface is loopback.

The socket guard (`sitecustomize.py`) covers Python processes only; ffmpeg, Chromium or any other program a test
starts would still reach the network. A fresh network namespace (Linux `unshare(CLONE_NEWNET)`) has no route out
at all, for this process and every process it starts, while 127.0.0.1 keeps working once `lo` is brought up.
Creating one needs root (or CAP_SYS_ADMIN) and a kernel or sandbox that allows it; where it is refused, the
reason is returned and the suite runs with the socket guard alone.

Must run before any thread starts: a namespace applies to the calling thread and what it starts afterwards.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys
import threading

CLONE_NEWNET = 0x40000000
"""unshare() flag for a new network namespace (linux/sched.h)."""
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
"""ioctls reading and setting an interface's flags (linux/sockios.h)."""
IFF_UP = 0x1
IFREQ = "16sh14x"
"""struct ifreq with its flags member: interface name, short flags, padding to 40 bytes."""


def _bring_loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def isolate_network() -> str | None:
    """Enter a new network namespace with only loopback up; None on success, else why it was not possible."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are a Linux feature (this is {sys.platform})"
    if threading.active_count() > 1:
        return f"{threading.active_count()} threads already run (the namespace would not cover them)"
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        original = os.open("/proc/self/ns/net", os.O_RDONLY)
    except OSError as exc:
        return f"cannot open /proc/self/ns/net: {exc.strerror}"
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            why = "needs root or CAP_SYS_ADMIN" if err == 1 else "refused by the kernel or a sandbox"
            return f"unshare(CLONE_NEWNET) failed: {os.strerror(err)} ({why}; running as uid {os.getuid()})"
        try:
            _bring_loopback_up()
        except OSError as exc:
            libc.setns(original, CLONE_NEWNET)  # back to the network we came from, loopback included
            return f"the new namespace's loopback could not be brought up: {exc.strerror}"
        return None
    finally:
        os.close(original)
