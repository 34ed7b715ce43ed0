"""The adversarial suite: one test per sandbox case (1-14) and API case (15-19) of RELIABILITY.md.

Each test runs abusive code in a real bubblewrap sandbox behind a real sandbox service process,
asserts the typed outcome (a status code, or a result flag), then that the service still answers
(`assert_healthy`: alive, SERVING, a fresh session runs a command) and that the host is untouched
(no process carrying the test's marker survives, canary files unchanged, the disk not filled, the
service's memory bounded). Limits are small (256 MiB memory, 64 MiB files and workspace).

The last part, on bwrap and gVisor both, is a hostile session against the service that hosts it:
frames an honest agent never sends, written into a live session's channel (the test takes a copy
with pidfd_getfd as root, which commands cannot), floods while the client reads nothing, the
channel out of the commands' reach, nested user namespaces, capped mounts in every mode, large
edits and a search cut short; each ends checking that the service itself is unharmed (its RSS, its
children, health, another session's calls).
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import os
import secrets
import shutil
import socket
import struct
import tarfile
import threading
import time

import grpc
import pytest

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.health_check import check_health

MiB = 1 << 20


@pytest.fixture
def marker() -> str:
    return "LIMI_MARK=" + secrets.token_hex(8)


@pytest.fixture
def session(small_sandbox):
    created = small_sandbox.create()
    yield created
    try:
        small_sandbox.close(created.id)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND


def wait_until_gone(service, marker: str, timeout: float = 5.0) -> list[int]:
    """Host processes still carrying `marker` after up to `timeout` seconds (none, when all is well)."""
    deadline = time.monotonic() + timeout
    while (left := service.marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def free_disk() -> int:
    return shutil.disk_usage("/").free


def status_of(call) -> grpc.StatusCode:
    """The status code a call fails with; the test fails if it succeeds."""
    try:
        answer = call()
    except grpc.RpcError as exc:
        return exc.code()
    pytest.fail(f"the call succeeded: {answer!r}"[:300])


# 1. Fork bombs (shell and os.fork loop).
def test_shell_fork_bomb_is_contained(small_sandbox, session, marker):
    out = small_sandbox.exec(session.id, f"exec env {marker} bash -c ':(){{ :|:& }};:; sleep 10'", timeout=3)
    assert out.result.timed_out
    assert small_sandbox.exec(session.id, "echo after").text == "after\n"
    assert wait_until_gone(small_sandbox, marker) == []
    small_sandbox.assert_healthy()


def test_python_fork_loop_is_contained(small_sandbox, session, marker):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    out = small_sandbox.exec(session.id, f"env {marker} python3 -c '{code}'", timeout=2)
    assert out.result.timed_out
    assert "os.fork" not in small_sandbox.exec(session.id, "ps -eo args").text
    assert wait_until_gone(small_sandbox, marker) == []
    small_sandbox.assert_healthy()


# 2. Infinite loop and `sleep 1e9`: the CPU-time limit and the wall-clock limit.
def test_cpu_loop_is_stopped_by_the_cpu_limit(small_sandbox):
    session = small_sandbox.create(limits={"cpu_seconds": 1})
    try:
        out = small_sandbox.exec(session.id, "python3 -c 'while True: pass'", timeout=20)
        assert out.result.cpu_limit_exceeded and not out.result.timed_out
        assert out.result.duration.ToTimedelta().total_seconds() < 15
    finally:
        small_sandbox.close(session.id)
    small_sandbox.assert_healthy()


def test_sleep_forever_is_stopped_by_the_wall_clock(small_sandbox, session, marker):
    started = time.monotonic()
    out = small_sandbox.exec(session.id, f"env {marker} sleep 1e9", timeout=1)
    assert out.result.timed_out and out.result.signal == 9 and time.monotonic() - started < 10
    assert wait_until_gone(small_sandbox, marker) == []
    small_sandbox.assert_healthy()


# 3. A background child that outlives its command.
def test_background_child_is_gone_when_the_call_ends(small_sandbox, session, marker):
    out = small_sandbox.exec(session.id, f"setsid nohup env {marker} sleep 1000 >/dev/null 2>&1 & echo started")
    assert out.text == "started\n" and out.result.exit_code == 0
    assert wait_until_gone(small_sandbox, marker) == []
    assert "sleep" not in small_sandbox.exec(session.id, "ps -eo comm").text
    small_sandbox.assert_healthy()


def test_processes_are_gone_when_the_session_closes(small_sandbox, marker):
    session = small_sandbox.create()
    call = small_sandbox.stub.Exec(
        sandbox_pb2.ExecRequest(session_id=session.id, command=f"env {marker} sleep 1000"), timeout=30
    )
    deadline = time.monotonic() + 10
    while not small_sandbox.marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    (pid,) = small_sandbox.marked_processes(marker)
    uids = small_sandbox.host_uids(pid)
    assert len(uids) == 1 and uids.pop() >= 640_000  # on the host it runs as an unprivileged uid of its own
    small_sandbox.close(session.id)
    assert wait_until_gone(small_sandbox, marker) == []
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    small_sandbox.assert_healthy()


# 4. 1 GB of output, `yes`, output without newlines.
@pytest.mark.parametrize(
    "command", ["head -c 1G /dev/zero", "yes", "python3 -c 'import sys\nwhile True: sys.stdout.write(\"x\" * 65536)'"]
)
def test_huge_output_is_truncated_and_memory_stays_bounded(small_sandbox, session, command):
    out = small_sandbox.exec(session.id, command, timeout=30)
    assert out.result.output_truncated
    assert len(out.stdout) + len(out.stderr) <= MiB
    assert small_sandbox.rss() < 400 * MiB
    small_sandbox.assert_healthy()


# 5. Memory balloon; filling the disk (workspace, /tmp, /dev/shm).
def test_memory_balloon_is_killed_with_memory_exceeded(small_sandbox, session):
    out = small_sandbox.exec(session.id, "python3 -c 'x = bytearray(1 << 30); print(len(x))'")
    assert out.result.memory_exceeded and out.result.exit_code != 0
    assert small_sandbox.exec(session.id, "echo alive").text == "alive\n"
    small_sandbox.assert_healthy()


@pytest.mark.parametrize("folder", ["/workspace", "/tmp", "/dev/shm"])
def test_filling_the_disk_fails_inside_the_sandbox(small_sandbox, session, folder):
    before = free_disk()
    out = small_sandbox.exec(
        session.id,
        f"fallocate -l 2G {folder}/big; echo rc=$?; dd if=/dev/zero of={folder}/dd bs=1M count=2048 2>&1; echo rc=$?",
    )
    assert "rc=0" not in out.text
    assert before - free_disk() < 1 << 30
    assert small_sandbox.exec(session.id, f"rm -f {folder}/big {folder}/dd; echo ok").text == "ok\n"
    small_sandbox.assert_healthy()


# 6. Archive bombs in uploads; multi-GB file writes.
def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def test_archive_bombs_are_refused(small_sandbox, session):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for n in range(8):
            info = tarfile.TarInfo(f"zeros{n}.bin")
            info.size = 32 * MiB
            archive.addfile(info, io.BufferedReader(Zeros(info.size)))
    bomb = buffer.getvalue()
    assert len(bomb) < 2 * MiB  # 256 MiB once expanded, four times the workspace
    assert (
        status_of(
            lambda: small_sandbox.stub.Upload(
                sandbox_pb2.UploadRequest(session_id=session.id, archive=bomb), timeout=60
            )
        )
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    many = tar_gz([(tarfile.TarInfo(f"f{i}"), b"") for i in range(1001)])
    assert (
        status_of(
            lambda: small_sandbox.stub.Upload(
                sandbox_pb2.UploadRequest(session_id=session.id, archive=many), timeout=60
            )
        )
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    small_sandbox.assert_healthy()


@pytest.mark.parametrize(
    "name,kind,link",
    [
        ("../escape.txt", tarfile.REGTYPE, ""),
        ("/etc/evil", tarfile.REGTYPE, ""),
        ("link", tarfile.SYMTYPE, "/etc/passwd"),
        ("up", tarfile.SYMTYPE, "../../.."),
        ("dev", tarfile.CHRTYPE, ""),
    ],
)
def test_archive_members_that_escape_are_refused(small_sandbox, session, name, kind, link):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    archive = tar_gz([(info, None)])
    code = status_of(
        lambda: small_sandbox.stub.Upload(sandbox_pb2.UploadRequest(session_id=session.id, archive=archive), timeout=30)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_multi_gigabyte_write_hits_the_file_size_limit(small_sandbox, session):
    out = small_sandbox.exec(session.id, "dd if=/dev/zero of=big bs=1M count=4096 2>&1; echo rc=$?; stat -c %s big")
    everything = (out.stdout + out.stderr).decode()
    assert "rc=0" not in everything and ("File size limit exceeded" in everything or "No space left" in everything)
    assert int(out.text.split()[-1]) <= 64 * MiB
    small_sandbox.assert_healthy()


# 7. Thread explosion; file-descriptor exhaustion.
def test_thread_explosion_is_contained(small_sandbox, session):
    code = "import threading, time\nn = 0\ntry:\n    while True:\n        threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); n += 1\nexcept RuntimeError as e:\n    print('stopped', n)\n"
    out = small_sandbox.run_python(session.id, code, timeout=20)
    assert out.text.startswith("stopped") and int(out.text.split()[1]) < 64
    assert small_sandbox.exec(session.id, "echo ok").text == "ok\n"
    small_sandbox.assert_healthy()


def test_file_descriptor_exhaustion_is_contained(small_sandbox, session):
    code = "import os\nfds = []\ntry:\n    while True: fds.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError as e:\n    print(len(fds), e.errno)\n"
    count, errno_value = small_sandbox.run_python(session.id, code).text.split()
    assert int(count) < 256 and errno_value == "24"  # EMFILE
    small_sandbox.assert_healthy()


# 8. Secrets: /etc/shadow, /proc/1/environ, the service's environment, a service-account token.
def test_host_secrets_are_not_visible(small_sandbox, session):
    out = small_sandbox.exec(
        session.id,
        "cat /etc/shadow; cat /proc/1/environ; cat /proc/*/environ; env; "
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token; ls /root /home /work 2>&1; id",
    )
    everything = out.stdout + out.stderr
    assert small_sandbox.secret.encode() not in everything and b"AWS_SECRET" not in everything
    assert b"No such file or directory" in out.stderr
    assert b"uid=65534" in out.stdout
    small_sandbox.assert_healthy()


# 9. Paths outside the workspace in file tools: ../, absolute paths, NUL bytes.
@pytest.mark.parametrize(
    "path", ["../etc/passwd", "a/../../x", "/etc/passwd", "/workspace/../etc/shadow", "bad\0name", "/proc/self/environ"]
)
def test_file_tools_refuse_paths_outside_the_workspace(small_sandbox, session, path):
    stub = small_sandbox.stub
    calls = [
        lambda: stub.ReadFile(sandbox_pb2.ReadFileRequest(session_id=session.id, path=path), timeout=10),
        lambda: stub.WriteFile(
            sandbox_pb2.WriteFileRequest(session_id=session.id, path=path, content=b"x"), timeout=10
        ),
        lambda: stub.EditFile(
            sandbox_pb2.EditFileRequest(session_id=session.id, path=path, old_text="a", new_text="b"), timeout=10
        ),
        lambda: stub.ListDir(sandbox_pb2.ListDirRequest(session_id=session.id, path=path), timeout=10),
        lambda: stub.Download(sandbox_pb2.DownloadRequest(session_id=session.id, path=path), timeout=10),
        lambda: stub.Search(sandbox_pb2.SearchRequest(session_id=session.id, pattern="x", path=path), timeout=10),
    ]
    for call in calls:
        assert status_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    small_sandbox.assert_healthy()


# 10. A symlink or hardlink planted by code, then read or written through a file tool.
def test_planted_links_cannot_reach_outside(small_sandbox, session, tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("host data\n")
    canary.chmod(0o666)
    small_sandbox.exec(
        session.id,
        f"ln -s {canary} to_host; ln -s /etc/passwd to_etc; ln -s ../../../../ up; mkdir d; ln -s / d/root; "
        f"ln /usr/bin/python3 hard 2>&1; echo ln=$?",
    )
    stub = small_sandbox.stub
    for path in ("to_host", "to_etc", "up/etc/passwd", "d/root/etc/passwd"):
        for call in (
            lambda path=path: stub.ReadFile(sandbox_pb2.ReadFileRequest(session_id=session.id, path=path), timeout=10),
            lambda path=path: stub.WriteFile(
                sandbox_pb2.WriteFileRequest(session_id=session.id, path=path, content=b"pwned"), timeout=10
            ),
        ):
            assert status_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    assert canary.read_text() == "host data\n"
    assert not (tmp_path / "pwned").exists()
    # Inside the sandbox the link points nowhere: the host's folders are not mounted.
    assert "No such file" in small_sandbox.exec(session.id, "cat to_host").stderr.decode()
    assert small_sandbox.exec(session.id, "ls hard 2>/dev/null || echo none").text == "none\n"
    small_sandbox.assert_healthy()


def test_links_inside_the_workspace_still_work(small_sandbox, session):
    small_sandbox.exec(
        session.id, "mkdir -p real && echo inside > real/f.txt && ln -s real alias && ln -s /workspace/real/f.txt abs"
    )
    for path in ("alias/f.txt", "abs"):
        assert (
            small_sandbox.stub.ReadFile(
                sandbox_pb2.ReadFileRequest(session_id=session.id, path=path), timeout=10
            ).content
            == b"inside\n"
        )


# 11. Overwriting an interpreter or a shared file that persists into the next call or session.
def test_system_files_are_read_only_and_sessions_start_clean(small_sandbox):
    first = small_sandbox.create()
    out = small_sandbox.exec(
        first.id,
        "echo x > /usr/bin/python3; echo rc=$?; echo evil > /tmp/left; echo 'print(1)' > /etc/sitecustomize.py; echo rc=$?",
    )
    assert out.text.count("rc=1") == 2
    small_sandbox.close(first.id)
    second = small_sandbox.create()
    try:
        out = small_sandbox.exec(second.id, "ls /tmp; python3 -c 'print(6 * 7)'; ls /workspace")
        assert out.text == "42\n"
    finally:
        small_sandbox.close(second.id)
    small_sandbox.assert_healthy()


# 12. State leaking between sessions; guessing another session's id.
def test_sessions_cannot_see_each_other(small_sandbox):
    a, b = small_sandbox.create(), small_sandbox.create()
    try:
        small_sandbox.exec(a.id, "echo private-a > secret.txt")
        listing = small_sandbox.exec(b.id, "ls -aR /workspace /tmp /dev/shm").text
        assert (
            "secret.txt" not in listing and small_sandbox.exec(b.id, "cat /workspace/secret.txt").result.exit_code == 1
        )
        assert "private-a" not in small_sandbox.exec(b.id, "ps -eo args").text
        guessed = "sbx-" + secrets.token_hex(16)
        assert status_of(lambda: small_sandbox.exec(guessed, "true")) == grpc.StatusCode.NOT_FOUND
        assert (
            status_of(
                lambda: small_sandbox.stub.ReadFile(
                    sandbox_pb2.ReadFileRequest(
                        session_id=a.id[:-1] + ("0" if a.id[-1] != "0" else "1"), path="secret.txt"
                    ),
                    timeout=10,
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
    finally:
        small_sandbox.close(a.id)
        small_sandbox.close(b.id)


# 13. Egress: this machine's NATS, the service itself, the metadata address, anything.
def test_no_network_egress(small_sandbox, session):
    nats_port = small_sandbox.nats.port
    grpc_port = int(small_sandbox.address.rsplit(":", 1)[1])
    code = (
        "import socket\n"
        f"for host, port in [('127.0.0.1', {nats_port}), ('127.0.0.1', {grpc_port}), ('169.254.169.254', 80), ('10.96.0.1', 443), ('1.1.1.1', 53)]:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n        s.connect((host, port)); print('CONNECTED', host, port)\n"
        "    except OSError as e:\n        print('refused', host, port, e.errno)\n"
    )
    out = small_sandbox.exec(session.id, f'python3 -c "{code}"')
    assert "CONNECTED" not in out.text and out.text.count("refused") == 5
    small_sandbox.assert_healthy()


# 14. DNS lookups; a listening socket that something else could reach.
def test_no_dns_and_listening_sockets_are_unreachable(small_sandbox, session):
    out = small_sandbox.exec(
        session.id,
        "python3 -c \"import socket\ntry:\n    print(socket.gethostbyname('example.com'))\nexcept OSError as e:\n    print('no dns')\"",
    )
    assert out.text == "no dns\n"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    call = small_sandbox.stub.Exec(
        sandbox_pb2.ExecRequest(
            session_id=session.id,
            command=f"python3 -c \"import socket,time\ns=socket.socket(); s.bind(('0.0.0.0', {port})); s.listen(); print('listening', flush=True); time.sleep(3)\"",
        ),
        timeout=30,
    )
    first = next(iter(call))
    assert first.stdout == b"listening\n"
    with socket.socket() as client:
        assert client.connect_ex(("127.0.0.1", port)) != 0
    call.cancel()
    small_sandbox.assert_healthy()


# 15. Malformed protobuf, empty required fields, NUL bytes, invalid UTF-8, 10 MB arguments.
def test_malformed_requests_get_invalid_argument(small_sandbox, session):
    raw = small_sandbox.channel.unary_unary("/limi.sandbox.v1.SandboxService/ReadFile")
    for payload in (
        b"\xff\xff\xff\xff",
        b"\x12\x04\xc3\x28ab",
        b"\x0a\x02\xff\xfe",
    ):  # garbage; a path and a session id that are not UTF-8
        assert status_of(lambda payload=payload: raw(payload, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
    stub = small_sandbox.stub
    cases = [
        lambda: next(stub.Exec(sandbox_pb2.ExecRequest(session_id=session.id, command=""), timeout=10)),
        lambda: next(stub.Exec(sandbox_pb2.ExecRequest(session_id=session.id, command="echo a\0b"), timeout=10)),
        lambda: next(stub.Exec(sandbox_pb2.ExecRequest(session_id=session.id, command="x" * (10 * MiB)), timeout=30)),
        lambda: next(stub.Exec(sandbox_pb2.ExecRequest(session_id="", command="true"), timeout=10)),
        lambda: stub.ReadFile(sandbox_pb2.ReadFileRequest(session_id=session.id, path=""), timeout=10),
        lambda: stub.EditFile(sandbox_pb2.EditFileRequest(session_id=session.id, path="f", old_text=""), timeout=10),
        lambda: stub.Search(sandbox_pb2.SearchRequest(session_id=session.id, pattern="(unclosed"), timeout=10),
        lambda: stub.CreateSession(sandbox_pb2.CreateSessionRequest(backend="vmware"), timeout=10),
        lambda: stub.CreateSession(sandbox_pb2.CreateSessionRequest(image="ubuntu:latest"), timeout=10),
        lambda: stub.CreateSession(
            sandbox_pb2.CreateSessionRequest(files=[sandbox_pb2.File(path="../../etc/cron.d/x", content=b"x")]),
            timeout=10,
        ),
        lambda: stub.CreateSession(
            sandbox_pb2.CreateSessionRequest(limits=sandbox_pb2.Limits(memory_bytes=1 << 50)), timeout=10
        ),
        lambda: stub.CreateSession(
            sandbox_pb2.CreateSessionRequest(limits=sandbox_pb2.Limits(cpu_seconds=-1)), timeout=10
        ),
        lambda: next(
            stub.RunPython(sandbox_pb2.RunPythonRequest(session_id=session.id, code="x" * (5 * MiB)), timeout=30)
        ),
    ]
    for call in cases:
        assert status_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    small_sandbox.assert_healthy()


# 16. Messages over the size limit.
def test_messages_over_the_size_limit_are_refused(small_sandbox, session):
    code = status_of(
        lambda: small_sandbox.stub.WriteFile(
            sandbox_pb2.WriteFileRequest(session_id=session.id, path="big", content=bytes(17 * MiB)), timeout=30
        )
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    small_sandbox.assert_healthy()


# 17. A client deadline shorter than the work: cancelled, resources freed.
def test_deadline_shorter_than_the_work_kills_it(small_sandbox, session, marker):
    call = small_sandbox.stub.Exec(
        sandbox_pb2.ExecRequest(session_id=session.id, command=f"env {marker} sleep 100"), timeout=1.0
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_until_gone(small_sandbox, marker) == []
    assert small_sandbox.exec(session.id, "echo next").text == "next\n"
    small_sandbox.assert_healthy()


# 18. The client cancels mid-stream: processes killed.
def test_cancel_mid_stream_kills_the_command(small_sandbox, session, marker):
    call = small_sandbox.stub.Exec(
        sandbox_pb2.ExecRequest(
            session_id=session.id,
            command=f"env {marker} bash -c 'for i in $(seq 1000); do echo tick $i; sleep 0.05; done'",
        ),
        timeout=60,
    )
    first = next(iter(call))
    assert first.stdout.startswith(b"tick")
    call.cancel()
    assert wait_until_gone(small_sandbox, marker) == []
    assert small_sandbox.exec(session.id, "echo next").text == "next\n"
    small_sandbox.assert_healthy()


# 19. Thousands of concurrent calls: backpressure, not out-of-memory.
def test_thousands_of_concurrent_calls_get_backpressure(small_sandbox):
    sessions = [small_sandbox.create() for _ in range(3)]

    async def storm() -> list[grpc.StatusCode]:
        async with grpc.aio.insecure_channel(small_sandbox.address) as channel:
            stub = sandbox_pb2_grpc.SandboxServiceStub(channel)

            async def one(n: int) -> grpc.StatusCode:
                try:
                    async for _ in stub.Exec(
                        sandbox_pb2.ExecRequest(session_id=sessions[n % 3].id, command="sleep 0.3"), timeout=60
                    ):
                        pass
                    return grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    return exc.code()

            return await asyncio.gather(*(one(n) for n in range(2000)))

    codes = asyncio.run(storm())
    # Beyond its pending-request limit (1000) gRPC core itself sheds calls with CANCELLED before they reach the servicer.
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) > 1000 and grpc.StatusCode.OK in codes
    assert 'code="INTERNAL"' not in small_sandbox.metrics()
    assert small_sandbox.rss() < 500 * MiB
    for created in sessions:
        small_sandbox.close(created.id)
    small_sandbox.assert_healthy()


# A hostile session against the service that hosts it, on both backends: its agent's channel is
# out of its commands' reach, and the service survives whatever comes back through it anyway (the
# test, as root on the host, takes a copy of the channel with pidfd_getfd and writes the frames).
BACKENDS = [
    "bwrap",
    pytest.param(
        "gvisor", marks=pytest.mark.skipif(shutil.which("runsc") is None, reason="gVisor (runsc) is not installed")
    ),
]
FLOOD_RSS_LIMIT = 300 * MiB


def assert_unharmed(service, bystander) -> None:
    """The service lives, is SERVING, has no zombie child, bounded memory, and another session still works."""
    assert service.process.poll() is None, service.log()[-3000:]
    assert check_health(service.address) == "SERVING"
    assert service.zombies() == []
    assert service.rss() < FLOOD_RSS_LIMIT
    assert service.exec(bystander.id, "echo bystander").text == "bystander\n"


def create_with_launcher(service, backend: str):
    """A new session and the pid of its sandbox's outermost process (a child of the service)."""
    before = set(service.children())
    session = service.create(backend=backend)
    (launcher,) = set(service.children()) - before
    return session, launcher


def pidfd_getfd(pid: int, target: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    assert pidfd >= 0, os.strerror(ctypes.get_errno())
    try:
        fd = libc.syscall(438, pidfd, target, 0)  # pidfd_getfd
        assert fd >= 0, os.strerror(ctypes.get_errno())
        return fd
    finally:
        os.close(pidfd)


def descendants(service, pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = [child for parent in frontier for child in service.child_states(parent)]
        found += children
        frontier = children
    return found


def take_agent_channel(service, launcher: int) -> socket.socket:
    """As root on the host: a copy of the agent's end of its channel, from the first process of the sandbox holding it."""
    for pid in [launcher, *descendants(service, launcher)]:
        try:
            if os.readlink(f"/proc/{pid}/fd/1").startswith("socket:"):
                return socket.socket(fileno=pidfd_getfd(pid, 1))
        except OSError:
            continue
    pytest.fail(f"no process of sandbox {launcher} holds the agent's channel")


def send_frames(channel: socket.socket, frames: list[bytes], seconds: float = 10.0) -> None:
    """Write frames as the agent would, until the service stops taking them (a refused or stalled channel)."""
    channel.settimeout(seconds)
    try:
        for frame in frames:
            channel.sendall(frame)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass


def frame(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("!II", len(header), len(body)) + header + body


def started_exec(service, session_id: str, command: str):
    """An Exec in flight (it printed "started"): the rest of its events."""
    events = service.stub.Exec(
        sandbox_pb2.ExecRequest(session_id=session_id, command=f"echo started; sleep 0.1; {command}"), timeout=60
    )
    assert next(events).stdout == b"started\n"
    return events


def rpc_error(events) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        for _ in events:
            pass
    return caught.value


class PeakRss:
    """The service's largest RSS while the block runs, sampled every 10 ms."""

    def __init__(self, service) -> None:
        self.service, self.peak, self._stop = service, 0, threading.Event()

    def __enter__(self) -> PeakRss:
        self.peak = self.service.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.service.rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.service.rss())


# Frames an honest agent never sends, each while call 1 (the session's first Exec) is in flight.
HOSTILE_FRAMES = {
    "nested 60 KB header": frame(b'{"id":1,"type":"stdout","x":' + b"[" * 60_000 + b"}"),
    "nested 400 KB header": frame(b"[" * 400_000),
    "body over the call's budget": frame(b'{"id":1,"type":"stdout"}', bytes(4 * MiB)),
    "infinite exit code": frame(b'{"id":1,"type":"result","exit_code":1e999}'),
    "NaN duration": frame(b'{"id":1,"type":"result","duration":NaN}'),
    "exit code out of int32": frame(b'{"id":1,"type":"result","exit_code":4294967296}'),
    "string where a flag goes": frame(b'{"id":1,"type":"result","timed_out":"yes"}'),
    "a frame kind exec has not": frame(b'{"id":1,"type":"ready"}'),
    "a call never made": frame(b'{"id":77,"type":"stdout"}', b"x"),
    "not UTF-8": frame(b'{"id":1,"type":"\xff\xfe"}'),
    "a lone surrogate": frame(b'{"id":1,"type":"error","code":"internal","field":"","message":"\\udcff"}'),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(HOSTILE_FRAMES))
def test_hostile_frames_end_only_their_own_session(cold_sandbox, backend, case):
    service = cold_sandbox
    bystander = service.create(backend=backend)
    session, launcher = create_with_launcher(service, backend)
    events = started_exec(service, session.id, "sleep 20")
    channel = take_agent_channel(service, launcher)
    send_frames(channel, [HOSTILE_FRAMES[case]])
    error = rpc_error(events)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "broke the agent protocol" in error.details()
    assert status_of(lambda: service.exec(session.id, "true")) == grpc.StatusCode.FAILED_PRECONDITION
    service.close(session.id)  # OK, not INTERNAL
    channel.close()
    deadline = time.monotonic() + 10
    while launcher in service.children() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert launcher not in service.children()  # reaped: no zombie, nothing left running
    assert_unharmed(service, bystander)
    service.close(bystander.id)


FLOODS = {
    # The case: 300 headers of 4 MB (refused at the first: a header is at most 64 KiB).
    "4 MB headers": [frame(b'{"id":1,"type":"stdout","pad":"' + b"x" * (4 << 20) + b'"}')] * 300,
    # Headers of legal size count against the call's budget (1 MiB of output and the headers' allowance).
    "60 KB headers": [frame(b'{"id":1,"type":"stdout","pad":"' + b"x" * (60 << 10) + b'"}', b"y")] * 300,
    "60 KB bodies": [frame(b'{"id":1,"type":"stdout"}', b"y" * (60 << 10))] * 300,
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flood", list(FLOODS))
def test_a_flood_of_frames_while_the_client_reads_nothing(cold_sandbox, backend, flood):
    service = cold_sandbox
    bystander = service.create(backend=backend)
    session, launcher = create_with_launcher(service, backend)
    events = started_exec(service, session.id, "sleep 20")  # then read nothing more until the flood is over
    channel = take_agent_channel(service, launcher)
    with PeakRss(service) as rss:
        send_frames(channel, FLOODS[flood])
    assert rss.peak < FLOOD_RSS_LIMIT
    error = rpc_error(events)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "broke the agent protocol" in error.details()
    service.close(session.id)
    channel.close()
    assert_unharmed(service, bystander)
    service.close(bystander.id)


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_waits_in_the_sandbox_while_the_client_reads_nothing(cold_sandbox, backend):
    """Honest output: a client that stops reading stops the command (it blocks on a full pipe), not the service's memory."""
    service = cold_sandbox
    bystander = service.create(backend=backend)
    sessions = [service.create(backend=backend, limits={"max_output_bytes": 16 * MiB}) for _ in range(4)]
    with PeakRss(service) as rss:
        calls = [started_exec(service, s.id, "head -c 12M /dev/zero") for s in sessions]
        time.sleep(3)  # nobody reads
        grown = rss.peak
        outputs = [service.collect(call) for call in calls]
    for out in outputs:
        assert len(out.stdout) == 12 * MiB and not out.result.output_truncated
        assert out.result.duration.ToTimedelta().total_seconds() > 2  # it waited for the client
    assert grown < FLOOD_RSS_LIMIT and rss.peak < FLOOD_RSS_LIMIT
    for created in sessions:
        service.close(created.id)
    assert_unharmed(service, bystander)
    service.close(bystander.id)


@pytest.mark.parametrize("backend", BACKENDS)
def test_commands_cannot_reach_the_agents_channel(small_sandbox, backend):
    """pidfd_getfd, /proc/<pid>/fd and ptrace against every other process of the sandbox (the agent and its init).

    The channel and the agent's stderr are fds 0-2. Under gVisor (which lets a process of the
    same uid reopen another's pipes through /proc even when it is not dumpable) the agent's ends
    of the commands' own output pipes stay reachable: they belong to the same session.
    """
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()):\n"
        "    reached = []\n"
        "    pidfd = libc.syscall(434, pid, 0)\n"
        "    for fd in range(3):\n"
        "        if pidfd >= 0 and libc.syscall(438, pidfd, fd, 0) >= 0:\n"
        "            reached.append('getfd%d' % fd)\n"
        "        try:\n"
        "            os.close(os.open('/proc/%d/fd/%d' % (pid, fd), os.O_RDWR))\n"
        "            reached.append('open%d' % fd)\n"
        "        except OSError:\n"
        "            pass\n"
        "    if libc.ptrace(16, pid, 0, 0) == 0:\n"
        "        reached.append('ptrace')\n"
        "    print(pid, open('/proc/%d/cmdline' % pid, 'rb').read().replace(b'\\0', b' ').decode(), ' '.join(reached) or 'none')\n"
    )
    session = small_sandbox.create(backend=backend)
    try:
        lines = small_sandbox.run_python(session.id, code).text.splitlines()
        agents = [line for line in lines if "agent.py" in line]
        assert len(agents) == 2, lines  # the agent and its init
        assert all(line.endswith(" none") for line in agents), lines
        assert small_sandbox.exec(session.id, "echo still-answering").text == "still-answering\n"
    finally:
        small_sandbox.close(session.id)
    small_sandbox.assert_healthy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_nested_user_namespaces(small_sandbox, backend):
    code = (
        "import ctypes, struct\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "CLONE_NEWUSER, SIGCHLD = 0x10000000, 17\n"
        "r = libc.syscall(272, CLONE_NEWUSER)\n"
        "print('unshare', r, ctypes.get_errno())\n"
        "r = libc.syscall(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)\n"
        "if r == 0:\n    libc._exit(0)\n"
        "print('clone', r, ctypes.get_errno())\n"
        "args = ctypes.create_string_buffer(struct.pack('8Q', CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0))\n"
        "r = libc.syscall(435, args, 64)\n"
        "if r == 0:\n    libc._exit(0)\n"
        "print('clone3', r, ctypes.get_errno())\n"
    )
    session = small_sandbox.create(backend=backend)
    try:
        out = small_sandbox.run_python(session.id, code)
        results = {name: int(result) for name, result, _ in (line.split() for line in out.text.splitlines())}
        assert results == {"unshare": -1, "clone": -1, "clone3": -1}, out.text
        assert small_sandbox.exec(session.id, "unshare -U true; echo rc=$?").text == "rc=1\n"
        assert (
            small_sandbox.exec(
                session.id,
                "echo threads; python3 -c 'import threading; t = threading.Thread(target=print); t.start(); t.join()'",
            ).result.exit_code
            == 0
        )
    finally:
        small_sandbox.close(session.id)
    small_sandbox.assert_healthy()


WRITABLE_MOUNTS = (
    "import os\n"
    "for line in open('/proc/self/mounts'):\n"
    "    point = line.split()[1]\n"
    "    if point.startswith(('/proc', '/sys')) or not os.path.isdir(point):\n"
    "        continue\n"
    "    written, path = 0, os.path.join(point, 'limi-fill')\n"
    "    try:\n"
    "        with open(path, 'wb', buffering=0) as out:\n"
    "            while written < (160 << 20):\n"
    "                written += out.write(bytes(4 << 20))\n"
    "    except OSError:\n"
    "        pass\n"
    "    if os.path.exists(path):\n"
    "        os.remove(path)\n"
    "    print(point, written >> 20)\n"
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("memory_cgroup", [True, False], ids=["cgroup", "rlimit-as"])
def test_every_writable_mount_has_a_size_cap(small_sandbox, rlimit_sandbox, backend, memory_cgroup):
    """/dev included (bwrap's is a tmpfs of its own), with and without the memory cgroup (which then caps nothing)."""
    service = small_sandbox if memory_cgroup else rlimit_sandbox
    session = service.create(backend=backend, limits={"max_file_bytes": 1 << 30})
    try:
        out = service.run_python(session.id, WRITABLE_MOUNTS, timeout=60)
        written = {point: int(mib) for point, mib in (line.split() for line in out.text.splitlines())}
        assert {"/", "/dev", "/workspace", "/tmp", "/dev/shm"} <= set(written), out.text
        assert all(mib <= 64 for mib in written.values()), written  # 64 MiB: the workspace and tmp caps
        assert written["/"] == written["/dev"] == 0
        assert written["/workspace"] > 0 and written["/tmp"] > 0
    finally:
        service.close(session.id)
    service.assert_healthy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_edits_within_the_documented_limits(small_sandbox, backend):
    stub = small_sandbox.stub
    session = small_sandbox.create(backend=backend)

    def edit(old: str, new: str):
        return stub.EditFile(
            sandbox_pb2.EditFileRequest(session_id=session.id, path="f.txt", old_text=old, new_text=new), timeout=60
        )

    try:
        stub.WriteFile(
            sandbox_pb2.WriteFileRequest(session_id=session.id, path="f.txt", content=b"head MARK tail"), timeout=30
        )
        for size in (2 * MiB, 6 * MiB):  # new_text of 2 and 6 MiB, then old_text of the same size
            assert edit("MARK", "a" * size).replacements == 1
            assert edit("a" * size, "MARK").replacements == 1
        content = stub.ReadFile(sandbox_pb2.ReadFileRequest(session_id=session.id, path="f.txt"), timeout=30).content
        assert content == b"head MARK tail"
        with pytest.raises(grpc.RpcError) as caught:  # the edited file would pass max_read_bytes (8 MiB)
            edit("MARK", "b" * (8 * MiB))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "new_text" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            edit("c" * (9 * MiB), "d")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "old_text" in caught.value.details()
        assert small_sandbox.exec(session.id, "cat f.txt").text == "head MARK tail"
    finally:
        small_sandbox.close(session.id)
    small_sandbox.assert_healthy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_search_cut_short_by_its_limit_says_so(small_sandbox, backend):
    session = small_sandbox.create(backend=backend, limits={"cpu_seconds": 1})
    stub = small_sandbox.stub
    try:
        stub.WriteFile(
            sandbox_pb2.WriteFileRequest(
                session_id=session.id, path="a.txt", content=b"needle here\n" + b"ab" * 60 + b"zq\n"
            ),
            timeout=30,
        )
        # Back-references make grep backtrack: the second line takes far longer than the search's CPU limit.
        started = time.monotonic()
        answer = stub.Search(
            sandbox_pb2.SearchRequest(session_id=session.id, pattern=r"needle|(.*)(.*)(.*)(.*)\4\3\2\1q"), timeout=60
        )
        assert answer.truncated and time.monotonic() - started < 15
        assert [(m.path, m.line) for m in answer.matches] in ([], [("a.txt", 1)])
        complete = stub.Search(sandbox_pb2.SearchRequest(session_id=session.id, pattern="needle"), timeout=30)
        assert [(m.path, m.line) for m in complete.matches] == [("a.txt", 1)] and not complete.truncated
    finally:
        small_sandbox.close(session.id)
    small_sandbox.assert_healthy()


def test_no_call_ended_in_an_internal_error(small_sandbox, cold_sandbox):
    for service in (small_sandbox, cold_sandbox):
        assert 'code="INTERNAL"' not in service.metrics() and "unhandled error" not in service.log()
