"""The suite runs offline: every process it starts refuses connections to anything but loopback, so the
end-to-end tests of ns-train, aenerf-render, aenerf-eval and aenerf-process prove they need no network.

Where the machine allows it (root, Linux), the whole test process runs in a network namespace of its own with only
loopback (tests/offline/network_namespace.py), which covers programs that are not Python (ffmpeg, Chromium) too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

NAMESPACE = os.environ.get("AENERF_TEST_NETWORK_NAMESPACE", "unavailable: the suite's conftest did not run")

PROBE = """
import socket
for target in (("203.0.113.7", 80), ("2001:db8::1", 443)):
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    try:
        socket.socket(family, socket.SOCK_STREAM).connect(target)
        print("connected", target)
    except ConnectionRefusedError as exc:
        print("refused", exc)
try:
    socket.getaddrinfo("huggingface.co", 443)
    print("resolved")
except socket.gaierror as exc:
    print("lookup refused", exc)
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
print("loopback ok")
"""


def test_child_processes_refuse_the_network_but_not_loopback():
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert sum(line.startswith("refused network access refused by the aenerf_ns test suite") for line in lines) == 2
    assert any(line.startswith("lookup refused") for line in lines) and "loopback ok" in lines
    assert not any(line.startswith(("connected", "resolved")) for line in lines)


def test_this_process_refuses_the_network():
    with pytest.raises(ConnectionRefusedError, match="only loopback"):
        socket.create_connection(("198.51.100.3", 443), timeout=1)
    with pytest.raises(socket.gaierror, match="lookup of pypi.org"):
        socket.getaddrinfo("pypi.org", 443)


@pytest.mark.skipif(NAMESPACE != "isolated", reason=f"no isolated network namespace: {NAMESPACE}")
def test_a_child_that_is_not_python_has_no_route_out():
    """bash opening a TCP connection itself (no Python socket guard involved): no route, at once; loopback works."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    start = time.monotonic()
    run = subprocess.run([bash, "-c", "exec 3<>/dev/tcp/1.1.1.1/53"], capture_output=True, text=True, timeout=20)
    assert run.returncode != 0 and "Network is unreachable" in run.stderr, run.stderr
    assert time.monotonic() - start < 5, "refused at once, not after a timeout"
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        local = subprocess.run([bash, "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True, timeout=20)
        assert local.returncode == 0, local.stderr
    interfaces = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
    assert interfaces == ["lo"], interfaces
