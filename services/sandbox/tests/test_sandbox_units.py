"""Direct tests of the sandbox's pure parts: paths, limits, settings, dedupe, command lines, the agent's file tools."""

from __future__ import annotations

import asyncio
import collections
import io
import json
import os
import random
import socket
import subprocess
import tarfile
import threading

import pytest

from limi_core.config import ConfigError, load_config
from limi_core.errors import InvalidArgument, Unavailable
from limi_sandbox.agent_client import (
    CALL_BUFFER_BYTES,
    FRAME,
    AgentClient,
    AgentProtocolError,
    SandboxGone,
    decode_header,
    encode_frame,
)
from limi_sandbox.backends.bwrap import bwrap_command
from limi_sandbox.backends.gvisor import oci_config
from limi_sandbox.inside import agent_files
from limi_sandbox.limits import default_limits, resolve_limits
from limi_sandbox.paths import workspace_path
from limi_sandbox.request_log import RequestLog
from limi_sandbox.settings import SandboxSettings

SETTINGS = SandboxSettings()


@pytest.mark.parametrize(
    "path,expected",
    [("a/b", "a/b"), ("./a//b/", "a/b"), ("/workspace/a", "a"), ("/workspace", ""), ("a/../b", "b"), ("", "")],
)
def test_workspace_paths_are_normalized(path, expected):
    assert workspace_path(path) == expected


@pytest.mark.parametrize(
    "path,reason",
    [
        ("../x", "leaves"),
        ("a/../../x", "leaves"),
        ("/etc/passwd", "outside"),
        ("/workspacex/a", "outside"),
        ("a\0b", "NUL"),
        ("x" * 5000, "longer"),
    ],
)
def test_workspace_paths_that_escape_are_refused(path, reason):
    with pytest.raises(InvalidArgument) as caught:
        workspace_path(path)
    assert caught.value.field == "path" and reason in caught.value.reason
    with pytest.raises(InvalidArgument):
        workspace_path("", allow_root=False)


def test_limits_take_defaults_and_refuse_beyond_the_caps():
    assert resolve_limits({}, SETTINGS) == default_limits(SETTINGS)
    assert resolve_limits({"memory_bytes": 64 << 20}, SETTINGS).memory_bytes == 64 << 20
    for field, value in (
        ("memory_bytes", 1 << 50),
        ("cpu_seconds", -1),
        ("max_open_files", 2),
        ("workspace_bytes", 10),
    ):
        with pytest.raises(InvalidArgument) as caught:
            resolve_limits({field: value}, SETTINGS)
        assert caught.value.field == f"limits.{field}"
    assert "as" in default_limits(SETTINGS).rlimits(use_address_space=True)
    assert "as" not in default_limits(SETTINGS).rlimits(use_address_space=False)


def test_settings_errors_name_the_variable():
    with pytest.raises(ConfigError) as caught:
        load_config(SandboxSettings, SandboxSettings.PREFIX, {"LIMI_SANDBOX_BACKENDS": "bwrap,docker"})
    assert caught.value.variable == "LIMI_SANDBOX_BACKENDS"
    with pytest.raises(ConfigError) as caught:
        load_config(SandboxSettings, SandboxSettings.PREFIX, {"LIMI_SANDBOX_DEFAULT_BACKEND": "kubernetes"})
    assert caught.value.variable == "LIMI_SANDBOX_DEFAULT_BACKEND"
    with pytest.raises(ConfigError) as caught:
        load_config(SandboxSettings, SandboxSettings.PREFIX, {"LIMI_SANDBOX_MAX_READ_BYTES": str(64 << 20)})
    assert caught.value.variable == "LIMI_SANDBOX_MAX_READ_BYTES"
    loaded = load_config(
        SandboxSettings,
        SandboxSettings.PREFIX,
        {"LIMI_SANDBOX_BACKENDS": "bwrap,kubernetes", "LIMI_SANDBOX_POOL_SIZE": "0"},
    )
    assert loaded.backends == ("bwrap", "kubernetes") and loaded.pool_size == 0


def test_bwrap_command_isolates_everything():
    argv = bwrap_command(
        "/usr/bin/bwrap", "/rt/etc", "/rt/agent", "/usr/bin/python3", default_limits(SETTINGS), 64 << 20
    )
    for flag in (
        "--unshare-user",
        "--disable-userns",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--as-pid-1",
    ):
        assert flag in argv
    assert argv[argv.index("--uid") + 1] == "65534"
    assert {argv[i + 1] for i, a in enumerate(argv) if a == "--remount-ro"} == {
        "/",
        "/dev",
    }  # every writable mount is capped
    workspace = argv.index("/workspace", argv.index("--tmpfs") - 1)
    assert argv[workspace - 1] == "--tmpfs" and argv[workspace - 2] == str(SETTINGS.default_workspace_bytes)
    binds = [argv[i + 2] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--ro-bind-try")]
    assert "/" not in binds and "/etc/shadow" not in binds and "/root" not in binds and "--bind" not in argv
    assert argv[-5:] == ["/usr/bin/python3", "-I", "-S", "/opt/limi/agent.py", "--sweep"]


def test_oci_config_of_gvisor():
    config = oci_config("/rt/etc", "/rt/agent", "/rt/root", "/usr/bin/python3", default_limits(SETTINGS), 64 << 20)
    assert config["process"]["user"] == {"uid": 65534, "gid": 65534} and config["process"]["noNewPrivileges"]
    assert all(value == [] for value in config["process"]["capabilities"].values())
    assert {n["type"] for n in config["linux"]["namespaces"]} == {"pid", "network", "ipc", "uts", "mount"}
    assert config["root"]["readonly"] and all("ro" in m["options"] for m in config["mounts"] if m["type"] == "bind")
    assert not any("AWS" in entry or "LIMI_" in entry for entry in config["process"]["env"])
    (rule,) = config["linux"]["seccomp"]["syscalls"]
    assert set(rule["names"]) == {"unshare", "clone"} and rule["args"][0]["value"] == 0x10000000  # CLONE_NEWUSER


async def test_request_log_runs_once_and_replays():
    log = RequestLog(ttl_seconds=60, max_bytes=1 << 20)
    runs = []

    async def run():
        runs.append(1)
        await asyncio.sleep(0.05)
        return len(runs)

    results = await asyncio.gather(*(log.unary("k", b"same", run) for _ in range(3)))
    assert results == [1, 1, 1] and len(runs) == 1
    with pytest.raises(InvalidArgument):
        await log.unary("k", b"other", run)
    assert await log.unary("", b"", run) == 2  # no key, no dedupe

    async def produce():
        for n in range(3):
            yield n

    first = [item async for item in log.stream("s", b"f", produce, size=lambda _: 8, on_abort=lambda: "aborted")]
    again = [item async for item in log.stream("s", b"f", produce, size=lambda _: 8, on_abort=lambda: "aborted")]
    assert first == again == [0, 1, 2]


async def test_request_log_records_a_cancelled_stream_and_forgets_early_failures():
    log = RequestLog(ttl_seconds=60, max_bytes=1 << 20)

    async def slow():
        yield "partial"
        await asyncio.sleep(10)
        yield "never"

    async def consume():
        async for _ in log.stream("c", b"f", slow, size=lambda _: 8, on_abort=lambda: "cancelled"):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [item async for item in log.stream("c", b"f", slow, size=lambda _: 8, on_abort=lambda: "x")] == [
        "partial",
        "cancelled",
    ]

    async def refused():
        raise Unavailable("busy")
        yield  # pragma: no cover

    with pytest.raises(Unavailable):
        [item async for item in log.stream("r", b"f", refused, size=lambda _: 8, on_abort=lambda: "x")]
    assert len(log) == 1  # only the cancelled stream: the refused call left no record, so a retry runs for real


def test_request_log_expires_old_entries():
    now = [0.0]
    log = RequestLog(ttl_seconds=10, max_bytes=1 << 20, clock=lambda: now[0])

    async def run():
        return "done"

    asyncio.run(log.unary("old", b"f", run))
    now[0] = 11
    asyncio.run(log.unary("new", b"f", run))
    assert len(log) == 1


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    root = tmp_path / "workspace"
    root.mkdir()
    monkeypatch.setattr(agent_files, "WORKSPACE", str(root))
    return root


def test_agent_resolves_links_only_inside_the_workspace(workspace, tmp_path):
    (workspace / "real").mkdir()
    (workspace / "real" / "f").write_text("in")
    os.symlink("real", workspace / "alias")
    os.symlink(str(workspace / "real" / "f"), workspace / "absolute")
    os.symlink(str(tmp_path), workspace / "outside")
    os.symlink("../..", workspace / "real" / "up")
    os.symlink("loop", workspace / "loop")
    assert agent_files.resolve("alias/f") == str(workspace / "real" / "f")
    for path in ("outside/x", "real/up/etc", "../x"):
        with pytest.raises(agent_files.ToolError) as caught:
            agent_files.resolve(path)
        assert caught.value.code == "invalid_argument"
    with pytest.raises(agent_files.ToolError) as caught:
        agent_files.resolve("loop")
    assert "too many levels" in caught.value.message
    os.mkfifo(workspace / "fifo")
    with pytest.raises(agent_files.ToolError) as caught:
        agent_files.read_file({"path": "fifo", "limit": 10}, b"")
    assert "not a regular file" in caught.value.message


def test_agent_upload_refuses_a_file_written_through_an_archive_symlink(workspace, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("x")
        link.type, link.linkname = tarfile.SYMTYPE, "y"
        archive.addfile(link)
        data = tarfile.TarInfo("x")
        data.size = 3
        archive.addfile(data, io.BytesIO(b"abc"))
    with pytest.raises(agent_files.ToolError) as caught:
        agent_files.upload({"path": "", "max_bytes": 1 << 20, "max_files": 10}, buffer.getvalue())
    assert caught.value.code == "invalid_argument" and "symbolic link" in caught.value.message
    assert not (workspace / "y").exists()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000,
        b'{"id":1,"type":"x","a":[[[[[[[[[[1]]]]]]]]]]}',
        b'{"id":NaN,"type":"x"}',
        b'{"id":true,"type":"x"}',
        b'{"id":-1,"type":"x"}',
        b'{"id":1}',
        b"\xff",
        b'{"id":' + b"9" * 5000 + b',"type":"x"}',
    ],
)
def test_frame_headers_from_the_agent_are_checked_before_use(raw):
    with pytest.raises(AgentProtocolError):
        decode_header(raw)


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert decode_header(b'{"id":3,"type":"stdout","s":"[[[[[[[[[[\\"[[[[[[[[[{"}')["id"] == 3


async def test_the_agent_client_stops_reading_while_its_caller_is_behind():
    service_end, agent_end = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=service_end)
    client = AgentClient(reader, writer, "unit")
    chunk = encode_frame({"id": 1, "type": "stdout"}, bytes(60 << 10))
    sent = []

    def agent() -> None:  # a fake agent that answers call 1 with 100 frames as fast as the service takes them
        agent_end.recv(65536)
        for _ in range(100):
            agent_end.sendall(chunk)
            sent.append(1)
        agent_end.sendall(encode_frame({"id": 1, "type": "result", "exit_code": 0}))

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    frames = client.stream("exec", {"command": "x"}, budget=64 << 20)
    first, _ = await frames.__anext__()
    assert first["type"] == "stdout"
    await asyncio.sleep(1.0)  # the caller takes nothing for a while: the service must not take it all in
    held_back = len(sent)
    assert held_back * len(chunk) < CALL_BUFFER_BYTES + (2 << 20)
    rest = [reply async for reply, _ in frames]
    assert len(rest) == 100 and rest[-1]["type"] == "result" and held_back < 100
    thread.join(5)
    await client.close()
    agent_end.close()


async def test_an_agent_that_sends_more_than_the_budget_is_cut_off():
    service_end, agent_end = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=service_end)
    gone = []
    client = AgentClient(reader, writer, "unit", on_gone=gone.append)
    frames = client.stream("exec", {"command": "x"}, budget=4096)
    waiting = asyncio.ensure_future(frames.__anext__())
    await asyncio.sleep(0.05)
    agent_end.recv(65536)
    agent_end.sendall(encode_frame({"id": 1, "type": "stdout"}, bytes(8192)))
    with pytest.raises(SandboxGone):
        await waiting
    assert gone and "budget" in gone[0] and not client.alive
    await client.close()  # never raises
    agent_end.close()


class AgentOnTheHost:
    """The in-sandbox agent run directly as a child (no sandbox, no --sweep), over a socketpair."""

    def __init__(self, workspace) -> None:
        self.sock, theirs = socket.socketpair()
        agent = os.path.join(os.path.dirname(agent_files.__file__), "agent.py")
        self.process = subprocess.Popen(
            ["/usr/bin/python3", "-I", "-S", agent],
            stdin=theirs,
            stdout=theirs,
            cwd=workspace,
            env={"LIMI_WORKSPACE": str(workspace), "PATH": "/usr/bin:/bin"},
        )
        theirs.close()
        self.sock.settimeout(20)
        assert self.receive()[0]["type"] == "ready"

    def send(self, header: dict, body: bytes = b"") -> None:
        self.sock.sendall(encode_frame(header, body))

    def _exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "the agent hung up"
            data += chunk
        return bytes(data)

    def receive(self) -> tuple[dict, bytes]:
        header_size, body_size = FRAME.unpack(self._exactly(FRAME.size))
        return json.loads(self._exactly(header_size)), self._exactly(body_size)

    def close(self) -> None:
        self.sock.close()
        assert self.process.wait(10) == 0


def test_the_agent_answers_every_command_once_with_all_its_output(tmp_path):
    """Concurrent commands with stdin, output on both streams, background children and kills, in random mixes."""
    agent = AgentOnTheHost(tmp_path)
    commands = [
        "true",
        "echo out; echo err >&2",
        "head -c 200000 /dev/zero",
        "cat",
        "sleep 0.05; echo late",
        "yes | head -c 100000",
        "sleep 5 >/dev/null & echo background",
        "exit 3",
    ]
    rnd = random.Random(16)
    for round_ in range(120):
        pending, output = {}, collections.Counter()
        for k in range(rnd.randint(1, 6)):
            rid = round_ * 10 + k + 1
            command = rnd.choice(commands)
            stdin = rnd.randbytes(rnd.randint(1, 300_000)) if command == "cat" else b""
            pending[rid] = (command, stdin)
            agent.send(
                {
                    "id": rid,
                    "op": "exec",
                    "command": command,
                    "timeout": 10,
                    "max_output": 1 << 20,
                    "limits": {"cpu": 10},
                },
                stdin,
            )
        killed = rnd.choice(list(pending)) if rnd.random() < 0.3 else None
        if killed:
            agent.send({"id": 0, "op": "kill", "target": killed})
        while pending:
            header, body = agent.receive()
            output[header["id"]] += len(body)
            if header["type"] == "result":
                command, stdin = pending.pop(header["id"])
                if header["id"] != killed:
                    expected = {"cat": len(stdin), "head -c 200000 /dev/zero": 200_000, "yes | head -c 100000": 100_000}
                    assert output[header["id"]] == expected.get(command, output[header["id"]]), (command, header)
                    assert header["exit_code"] == (3 if command == "exit 3" else 0)
            else:
                assert header["type"] in ("stdout", "stderr") and header["id"] in pending
    agent.close()
