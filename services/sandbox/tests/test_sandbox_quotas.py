"""Quotas, idle expiry and shutdown of a real sandbox service with tiny quotas."""

from __future__ import annotations

import pathlib
import secrets
import signal
import threading
import time

import grpc
import pytest

from limi.sandbox.v1 import sandbox_pb2


@pytest.fixture(scope="module")
def service(sandbox_service_factory):
    return sandbox_service_factory(
        LIMI_SANDBOX_MAX_SESSIONS="2",
        LIMI_SANDBOX_MAX_CONCURRENT_EXECS="2",
        LIMI_SANDBOX_IDLE_TIMEOUT_SECONDS="1.5",
        LIMI_SANDBOX_POOL_SIZE="1",
    )


def test_sessions_beyond_the_quota_are_refused(service):
    first, second = service.create(), service.create()
    try:
        with pytest.raises(grpc.RpcError) as caught:
            service.create()
        assert (
            caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "sessions are open" in caught.value.details()
        )
    finally:
        service.close(first.id)
        service.close(second.id)
    third = service.create()
    service.close(third.id)
    assert 'limi_sandbox_rejected_total{quota="sessions"}' in service.metrics()


def test_commands_beyond_the_concurrency_quota_are_refused(service):
    a, b = service.create(), service.create()
    try:
        calls = [
            service.stub.Exec(sandbox_pb2.ExecRequest(session_id=s.id, command="echo started; sleep 1"), timeout=30)
            for s in (a, a)
        ]
        for call in calls:
            assert next(call).stdout == b"started\n"
        with pytest.raises(grpc.RpcError) as caught:
            service.exec(b.id, "true")
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in calls:
            assert [e.result.exit_code for e in call if e.WhichOneof("event") == "result"] == [0]
        assert service.exec(b.id, "echo free").text == "free\n"
    finally:
        service.close(a.id)
        service.close(b.id)


def test_idle_sessions_expire_but_busy_ones_do_not(service):
    idle, busy = service.create(), service.create()
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(service.exec(busy.id, "sleep 3; echo done").text))
    worker.start()
    time.sleep(3.2)
    worker.join()
    assert outcome == ["done\n"]
    with pytest.raises(grpc.RpcError) as caught:
        service.exec(idle.id, "true")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert service.exec(busy.id, "echo alive").text == "alive\n"
    service.close(busy.id)
    assert 'limi_sandbox_sessions_closed_total{reason="idle"}' in service.metrics()


def cgroup_folders(pid: int) -> list[pathlib.Path]:
    return [p for p in pathlib.Path("/sys/fs/cgroup").glob(f"*/**/limi-sandbox-{pid}") if p.is_dir()]


def test_sigterm_ends_every_sandbox_and_cleans_up(sandbox_service_factory):
    service = sandbox_service_factory(LIMI_SANDBOX_POOL_SIZE="2")
    marker = "LIMI_MARK=" + secrets.token_hex(8)
    session = service.create()
    call = service.stub.Exec(
        sandbox_pb2.ExecRequest(session_id=session.id, command=f"env {marker} sleep 1000"), timeout=60
    )
    deadline = time.monotonic() + 10
    while not service.marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service.marked_processes(marker)
    pid = service.process.pid
    had_cgroups = bool(cgroup_folders(pid))
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(30) == 0
    assert service.marked_processes(marker) == []
    assert cgroup_folders(pid) == [] or not had_cgroups
    with pytest.raises(grpc.RpcError):
        list(call)


def test_without_cgroups_memory_is_limited_per_command_by_rlimit_as(sandbox_service_factory):
    service = sandbox_service_factory(
        LIMI_SANDBOX_USE_CGROUPS="false", LIMI_SANDBOX_POOL_SIZE="1", LIMI_SANDBOX_DEFAULT_MEMORY_BYTES=str(256 << 20)
    )
    session = service.create()
    try:
        balloon = service.run_python(session.id, "x = bytearray(1 << 30)")
        assert balloon.result.memory_exceeded and b"MemoryError" in balloon.stderr
        assert service.run_python(session.id, "x = bytearray(64 << 20); print(len(x))").text == str(64 << 20) + "\n"
    finally:
        service.close(session.id)
