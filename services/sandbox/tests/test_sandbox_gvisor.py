"""The gVisor backend behind a real service: same API, commands served by gVisor's kernel, same containment."""

from __future__ import annotations

import shutil
import time

import grpc
import pytest

from limi.sandbox.v1 import sandbox_pb2

MiB = 1 << 20
pytestmark = pytest.mark.skipif(
    shutil.which("runsc") is None, reason="gVisor (runsc) is not installed; scripts/setup installs it"
)


@pytest.fixture(scope="module")
def service(sandbox_service_factory):
    return sandbox_service_factory(
        LIMI_SANDBOX_POOL_SIZE="1",
        LIMI_SANDBOX_GVISOR_POOL_SIZE="1",
        LIMI_SANDBOX_DEFAULT_MEMORY_BYTES=str(256 * MiB),
        LIMI_SANDBOX_DEFAULT_WORKSPACE_BYTES=str(64 * MiB),
        LIMI_SANDBOX_TMP_BYTES=str(64 * MiB),
        LIMI_SANDBOX_DEFAULT_MAX_FILE_BYTES=str(64 * MiB),
        LIMI_SANDBOX_DEFAULT_MAX_PROCESSES="64",
    )


@pytest.fixture(scope="module")
def session(service):
    deadline = time.monotonic() + 30
    while 'limi_sandbox_pool_size{backend="gvisor"} 1.0' not in service.metrics() and time.monotonic() < deadline:
        time.sleep(0.1)
    created = service.create(backend="gvisor")
    yield created
    service.close(created.id)


def test_commands_run_on_gvisors_kernel_as_an_unprivileged_user(service, session):
    assert session.backend == "gvisor" and session.warm
    out = service.exec(session.id, "dmesg | head -1; id -u; cat /proc/self/status | grep CapEff; pwd")
    lines = out.text.splitlines()
    assert (
        "gVisor" in lines[0]
        and lines[1] == "65534"
        and lines[2].endswith("0000000000000000")
        and lines[3] == "/workspace"
    )


def test_file_tools_and_workspace(service, session):
    stub = service.stub
    stub.WriteFile(sandbox_pb2.WriteFileRequest(session_id=session.id, path="a/b.txt", content=b"gvisor"), timeout=30)
    assert service.exec(session.id, "cat a/b.txt").text == "gvisor"
    service.exec(session.id, "ln -s /etc/passwd planted")
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReadFile(sandbox_pb2.ReadFileRequest(session_id=session.id, path="planted"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_no_network_and_no_secrets(service, session):
    code = f"import socket\ns = socket.socket(); s.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', {service.nats.port})); print('CONNECTED')\nexcept OSError as e:\n    print('refused')\n"
    assert service.run_python(session.id, code).text == "refused\n"
    out = service.exec(session.id, "cat /proc/*/environ; env; ls /root /etc/shadow 2>&1")
    assert service.secret.encode() not in out.stdout + out.stderr


def test_memory_balloon_and_timeout_are_typed(service, session):
    balloon = service.run_python(session.id, "x = bytearray(1 << 30)")
    assert balloon.result.memory_exceeded and balloon.result.exit_code != 0
    slept = service.exec(session.id, "sleep 100", timeout=1)
    assert slept.result.timed_out


def test_background_children_are_swept_inside_gvisor(service, session):
    service.exec(session.id, "setsid nohup sleep 1000 >/dev/null 2>&1 &")
    assert "sleep" not in service.exec(session.id, "ps -eo comm").text
    service.assert_healthy()
