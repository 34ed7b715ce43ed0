"""The Kubernetes backend: its objects validated in strict mode, its calls against a test double of the API.

No API server can run here, so `FakeCluster` stands in for the four CoreV1Api calls the backend
makes (create, read, delete a pod; an exec stream). It records every object sent, and runs each
"pod" as a bubblewrap sandbox with the pod's agent files (from its annotations, as the
downward-API volume would) so that the exec stream carries the real agent protocol. Everything
else is real: the backend, the session layer, the servicer behind a gRPC server on a free port.
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import tempfile
import threading

import grpc
import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, V1Pod, V1PodStatus
from kubernetes.client.rest import ApiException

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.grpc_edge import EdgeInterceptor
from limi_core.processes import free_port
from limi_sandbox.backends.bwrap import bwrap_command
from limi_sandbox.backends.kubernetes import ANNOTATION_PREFIX, KubernetesBackend, network_policy_manifest, pod_manifest
from limi_sandbox.limits import default_limits
from limi_sandbox.servicer import SandboxServicer
from limi_sandbox.sessions import SessionManager
from limi_sandbox.settings import SandboxSettings

MiB = 1 << 20
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SETTINGS = SandboxSettings(
    backends=("kubernetes",),
    default_backend="kubernetes",
    kubernetes_namespace="limi-sandbox",
    default_memory_bytes=256 * MiB,
    default_workspace_bytes=64 * MiB,
    tmp_bytes=64 * MiB,
)


def validate(manifest: dict) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(manifest, desired_version=version, strict=True)


def sample_pod(**overrides) -> dict:
    arguments = dict(
        tmp_bytes=64 * MiB,
        runtime_class="gvisor",
        cpu_request="250m",
        cpu_limit="2",
        lifetime_seconds=3600,
        agent_files={"agent.py": "print('agent')\n", "agent_files.py": "x = 1\n"},
    )
    arguments.update(overrides)
    return pod_manifest("limi-sbx-1", "limi-sandbox", "python:3.11-slim", default_limits(SETTINGS), **arguments)


@pytest.mark.parametrize("overrides", [{}, {"runtime_class": ""}, {"tmp_bytes": 1 << 30, "cpu_limit": "500m"}])
def test_the_pod_manifest_is_valid_in_strict_mode(overrides):
    validate(sample_pod(**overrides))


def test_the_network_policy_is_valid_and_denies_everything():
    policy = network_policy_manifest("limi-sandbox")
    validate(policy)
    assert (
        policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        and policy["spec"]["ingress"] == policy["spec"]["egress"] == []
    )
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= sample_pod()["metadata"]["labels"].items()


def test_the_pod_is_locked_down_as_reliability_md_asks():
    pod = sample_pod()
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    security = container["securityContext"]
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"] and not security["privileged"]
    assert spec["runtimeClassName"] == "gvisor" and spec["dnsPolicy"] == "None"
    assert {v["name"]: v["emptyDir"]["sizeLimit"] for v in spec["volumes"] if "emptyDir" in v} == {
        "workspace": str(64 * MiB),
        "tmp": str(64 * MiB),
    }
    assert (
        set(container["resources"]["requests"])
        == set(container["resources"]["limits"])
        == {"cpu", "memory", "ephemeral-storage"}
    )
    assert not any("hostPath" in v for v in spec["volumes"]) and "hostNetwork" not in spec and "hostPID" not in spec
    agent_volume = next(v for v in spec["volumes"] if v["name"] == "agent")
    assert {i["path"] for i in agent_volume["downwardAPI"]["items"]} == {"agent.py", "agent_files.py"}
    assert "runtimeClassName" not in sample_pod(runtime_class="")["spec"]


class FakeExecStream:
    """What kubernetes.stream.stream returns (a WSClient), over a local process's pipes."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.open = process, True
        self.buffers = {process.stdout.fileno(): b"", process.stderr.fileno(): b""}

    def is_open(self) -> bool:
        return self.open

    def update(self, timeout: float = 0) -> None:
        fds = [fd for fd in self.buffers if fd >= 0]
        ready, _, _ = select.select(fds, [], [], timeout)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                self.open = False
            self.buffers[fd] += data

    def _take(self, fd: int) -> bytes:
        data, self.buffers[fd] = self.buffers[fd], b""
        return data

    def read_stdout(self, timeout: float = 0) -> bytes:
        return self._take(self.process.stdout.fileno())

    def read_stderr(self, timeout: float = 0) -> bytes:
        return self._take(self.process.stderr.fileno())

    def write_stdin(self, data: bytes) -> None:
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def close(self) -> None:
        self.open = False
        self.process.kill()
        self.process.wait()


class FakeCluster:
    """A test double of the CoreV1Api calls the backend makes; each pod runs as a bubblewrap sandbox."""

    def __init__(self, root: str, refuse_create: int | None = None, phase: str = "Running") -> None:
        self.root, self.refuse_create, self.phase = root, refuse_create, phase
        self.pods: dict[str, dict] = {}
        self.created: list[dict] = []
        self.deleted: list[tuple[str, int | None]] = []
        self.execs: list[tuple[str, list[str]]] = []
        self.streams: list[FakeExecStream] = []

    def create_namespaced_pod(self, namespace: str, body: V1Pod) -> V1Pod:
        manifest = ApiClient().sanitize_for_serialization(body)
        self.created.append(manifest)
        if self.refuse_create:
            raise ApiException(status=self.refuse_create, reason="Forbidden")
        assert manifest["metadata"]["namespace"] == namespace
        self.pods[manifest["metadata"]["name"]] = manifest
        return body

    def read_namespaced_pod(self, name: str, namespace: str) -> V1Pod:
        if name not in self.pods:
            raise ApiException(status=404, reason="Not Found")
        return V1Pod(status=V1PodStatus(phase=self.phase, reason="Error" if self.phase == "Failed" else None))

    def delete_namespaced_pod(self, name: str, namespace: str, grace_period_seconds: int | None = None) -> None:
        self.deleted.append((name, grace_period_seconds))
        if self.pods.pop(name, None) is None:
            raise ApiException(status=404, reason="Not Found")

    def connect_get_namespaced_pod_exec(self, *args, **kwargs):
        raise AssertionError("only reached through stream()")

    def stream(
        self,
        method,
        name: str,
        namespace: str,
        *,
        command: list[str],
        container: str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
        _preload_content: bool,
        binary: bool,
    ) -> FakeExecStream:
        assert method == self.connect_get_namespaced_pod_exec and not tty and not _preload_content and binary
        self.execs.append((name, command))
        pod = self.pods[name]
        files = os.path.join(self.root, name)
        os.makedirs(files, exist_ok=True)
        for key, text in pod["metadata"]["annotations"].items():  # what the downward-API volume would mount
            with open(os.path.join(files, key.removeprefix(ANNOTATION_PREFIX)), "w") as handle:
                handle.write(text)
        os.chmod(files, 0o755)
        etc = os.path.join(self.root, "etc")
        os.makedirs(etc, exist_ok=True)
        for entry in ("passwd", "group", "hosts"):
            with open(os.path.join(etc, entry), "w") as handle:
                handle.write(
                    "sandbox:x:65534:65534::/workspace:/bin/sh\n" if entry != "hosts" else "127.0.0.1 localhost\n"
                )
        argv = bwrap_command("bwrap", etc, files, "/usr/bin/python3", default_limits(SETTINGS), 64 * MiB)
        argv = argv[: argv.index("--")] + ["--", *command]
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin"},
            start_new_session=True,
        )
        stream = FakeExecStream(process)
        self.streams.append(stream)
        return stream


class InProcessSandbox:
    """The servicer with a kubernetes-only session manager, behind a real gRPC server on its own loop."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.address = f"127.0.0.1:{free_port()}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        self.channel = grpc.insecure_channel(self.address)
        self.stub = sandbox_pb2_grpc.SandboxServiceStub(self.channel)

    async def _start(self) -> None:
        backend = KubernetesBackend(
            self.cluster,
            self.cluster.stream,
            namespace="limi-sandbox",
            image="python:3.11-slim",
            images=(),
            runtime_class="gvisor",
            tmp_bytes=64 * MiB,
            lifetime_seconds=3600,
            start_timeout=10,
        )
        self.manager = SessionManager(SETTINGS, {"kubernetes": backend})
        await self.manager.start()
        self.server = grpc.aio.server(interceptors=[EdgeInterceptor("sandbox")])
        sandbox_pb2_grpc.add_SandboxServiceServicer_to_server(SandboxServicer(SETTINGS, self.manager), self.server)
        self.server.add_insecure_port(self.address)
        await self.server.start()

    async def _stop(self) -> None:
        await self.manager.stop()
        await self.server.stop(1)

    def stop(self) -> None:
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def cluster_factory():
    made: list[InProcessSandbox] = []
    with tempfile.TemporaryDirectory() as root:

        def make(**options) -> InProcessSandbox:
            sandbox = InProcessSandbox(FakeCluster(root, **options))
            made.append(sandbox)
            return sandbox

        yield make
        for sandbox in made:
            sandbox.stop()


def run(stub, session_id: str, command: str) -> tuple[bytes, sandbox_pb2.ExecResult]:
    out, result = b"", None
    for event in stub.Exec(sandbox_pb2.ExecRequest(session_id=session_id, command=command), timeout=30):
        if event.WhichOneof("event") == "stdout":
            out += event.stdout
        elif event.WhichOneof("event") == "result":
            result = event.result
    return out, result


def test_a_session_is_one_pod_with_commands_through_the_exec_stream(cluster_factory):
    sandbox = cluster_factory()
    session = sandbox.stub.CreateSession(
        sandbox_pb2.CreateSessionRequest(files=[sandbox_pb2.File(path="hello.txt", content=b"hi")]), timeout=30
    )
    assert session.backend == "kubernetes" and not session.warm
    (pod,) = sandbox.cluster.created
    validate(pod)
    assert pod["metadata"]["labels"]["limi.dev/sandbox-session"] == pod["metadata"]["name"]
    assert sandbox.cluster.execs == [
        (pod["metadata"]["name"], ["python3", "-I", "-S", "/opt/limi/agent.py", "--sweep"])
    ]
    out, result = run(sandbox.stub, session.id, "cat hello.txt; id -u")
    assert out == b"hi65534\n" and result.exit_code == 0
    out, result = run(sandbox.stub, session.id, "echo one; echo two")
    assert out == b"one\ntwo\n" and len(sandbox.cluster.execs) == 1  # one exec stream for the whole session
    read = sandbox.stub.ReadFile(sandbox_pb2.ReadFileRequest(session_id=session.id, path="hello.txt"), timeout=30)
    assert read.content == b"hi"
    sandbox.stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session.id), timeout=30)
    assert sandbox.cluster.deleted == [(pod["metadata"]["name"], 0)] and sandbox.cluster.pods == {}


def test_every_object_sent_is_valid_for_any_limits(cluster_factory):
    sandbox = cluster_factory()
    for limits in (
        {},
        {"memory_bytes": 1 << 30, "workspace_bytes": 32 * MiB},
        {"cpu_seconds": 10, "max_processes": 32},
    ):
        session = sandbox.stub.CreateSession(
            sandbox_pb2.CreateSessionRequest(limits=sandbox_pb2.Limits(**limits)), timeout=30
        )
        sandbox.stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session.id), timeout=30)
    assert len(sandbox.cluster.created) == 3
    for manifest in sandbox.cluster.created:
        validate(manifest)


def test_a_refused_pod_is_unavailable_and_leaves_nothing(cluster_factory):
    sandbox = cluster_factory(refuse_create=403)
    with pytest.raises(grpc.RpcError) as caught:
        sandbox.stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "403" in caught.value.details()
    assert sandbox.cluster.pods == {}


def test_a_pod_that_fails_to_run_is_unavailable_and_deleted(cluster_factory):
    sandbox = cluster_factory(phase="Failed")
    with pytest.raises(grpc.RpcError) as caught:
        sandbox.stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "Failed" in caught.value.details()
    assert sandbox.cluster.pods == {} and len(sandbox.cluster.deleted) == 1


def test_only_allowed_images_run(cluster_factory):
    sandbox = cluster_factory()
    with pytest.raises(grpc.RpcError) as caught:
        sandbox.stub.CreateSession(sandbox_pb2.CreateSessionRequest(image="attacker/miner:latest"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and sandbox.cluster.created == []
    session = sandbox.stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=30)
    assert session.image == "python:3.11-slim" == sandbox.cluster.created[0]["spec"]["containers"][0]["image"]
