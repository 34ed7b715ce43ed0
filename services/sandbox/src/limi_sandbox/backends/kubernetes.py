"""The Kubernetes backend: one locked-down pod per session, commands through the API's exec stream.

Kept thin on purpose, because no API server can run where this is developed: `pod_manifest()` and
`network_policy_manifest()` are pure functions (validated in tests with kubernetes-validate in
strict mode), and `KubernetesBackend` makes four calls through the official client: create the
pod, read it until it runs, open one exec stream that runs the agent for the session's whole
life (the same agent and frames as the local backends), and delete the pod.

The pod follows RELIABILITY.md: runAsNonRoot as uid 65534, no privilege escalation, ALL
capabilities dropped, RuntimeDefault seccomp, read-only root filesystem, emptyDir workspace and
/tmp with size limits, no service-account token, no service links in the environment, no cluster
DNS, requests and limits for cpu, memory and ephemeral storage, an optional runtimeClassName
(gVisor, Kata), and labels that the default-deny NetworkPolicy selects. The agent's files reach
the pod as annotations through a read-only downward-API volume, so any image with python3 works.
It does NOT cap processes per pod (the pod spec has no such field; the agent's per-command
RLIMIT_NPROC and the node's podPidsLimit do), and a workspace over its sizeLimit gets the pod
evicted by the kubelet rather than a write error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from limi_core.errors import InvalidArgument, Unavailable
from limi_sandbox import metrics
from limi_sandbox.agent_client import AgentClient
from limi_sandbox.backends import Backend, Sandbox, SandboxSpec
from limi_sandbox.backends.local import AGENT_DIR, AGENT_FILES, INSIDE, SANDBOX_ENV, SANDBOX_UID, WORKSPACE
from limi_sandbox.limits import SessionLimits

log = logging.getLogger(__name__)

SESSION_LABEL = "limi.dev/sandbox-session"
COMPONENT_LABELS = {"app.kubernetes.io/name": "limi", "app.kubernetes.io/component": "sandbox-session"}
ANNOTATION_PREFIX = "limi.dev/"


def pod_manifest(
    name: str,
    namespace: str,
    image: str,
    limits: SessionLimits,
    *,
    tmp_bytes: int,
    runtime_class: str,
    cpu_request: str,
    cpu_limit: str,
    lifetime_seconds: int,
    agent_files: dict[str, str],
    python: str = "python3",
) -> dict[str, Any]:
    """The Pod of one sandbox session (a pure function)."""
    ephemeral = limits.workspace_bytes + tmp_bytes + (256 << 20)
    container_security = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": SANDBOX_UID,
        "runAsGroup": SANDBOX_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "activeDeadlineSeconds": lifetime_seconds,
        "hostname": "sandbox",
        "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["127.0.0.1"]},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "fsGroup": SANDBOX_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "sandbox",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": [python, "-I", "-S", f"{AGENT_DIR}/agent.py", "--init"],
                "workingDir": WORKSPACE,
                "env": [{"name": key, "value": value} for key, value in SANDBOX_ENV.items()],
                "securityContext": container_security,
                "resources": {
                    "requests": {
                        "cpu": cpu_request,
                        "memory": str(limits.memory_bytes),
                        "ephemeral-storage": str(ephemeral),
                    },
                    "limits": {
                        "cpu": cpu_limit,
                        "memory": str(limits.memory_bytes),
                        "ephemeral-storage": str(ephemeral),
                    },
                },
                "volumeMounts": [
                    {"name": "workspace", "mountPath": WORKSPACE},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "agent", "mountPath": AGENT_DIR, "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "workspace", "emptyDir": {"sizeLimit": str(limits.workspace_bytes)}},
            {"name": "tmp", "emptyDir": {"sizeLimit": str(tmp_bytes)}},
            {
                "name": "agent",
                "downwardAPI": {
                    "defaultMode": 0o444,
                    "items": [
                        {"path": file, "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_PREFIX}{file}']"}}
                        for file in sorted(agent_files)
                    ],
                },
            },
        ],
    }
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**COMPONENT_LABELS, SESSION_LABEL: name},
            "annotations": {ANNOTATION_PREFIX + file: text for file, text in agent_files.items()},
        },
        "spec": spec,
    }


def network_policy_manifest(namespace: str) -> dict[str, Any]:
    """Default deny, both ways, for every sandbox pod. Exec reaches pods through the kubelet, not the pod network."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "limi-sandbox-deny-all", "namespace": namespace, "labels": dict(COMPONENT_LABELS)},
        "spec": {
            "podSelector": {"matchLabels": dict(COMPONENT_LABELS)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }


def agent_sources() -> dict[str, str]:
    return {name: (INSIDE / name).read_text() for name in AGENT_FILES}


class _Discard:
    def write(self, data) -> None:
        return None


class _ReadGate(asyncio.ReadTransport):
    """What the StreamReader pauses and resumes when its buffer fills and empties: the pump thread waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.open.set()

    def pause_reading(self) -> None:
        self.open.clear()

    def resume_reading(self) -> None:
        self.open.set()


class WebSocketChannel:
    """The exec stream (a blocking kubernetes.stream WSClient) as the agent client's reader and writer.

    While the agent client is behind, the pump thread stops reading the stream (backpressure to
    the pod) instead of buffering."""

    def __init__(self, ws, loop: asyncio.AbstractEventLoop) -> None:
        self.ws, self.loop = ws, loop
        if hasattr(ws, "_all"):
            ws._all = _Discard()  # the client keeps all output for read_all(); a session's would grow forever
        self.reader = asyncio.StreamReader(limit=1 << 16)
        self._gate = _ReadGate()
        self.reader.set_transport(self._gate)
        self.stderr_tail = b""
        self._pending: list[bytes] = []
        self._send_lock = asyncio.Lock()
        self._thread = threading.Thread(target=self._pump, name="k8s-exec-reader", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while self.ws.is_open():
                if not self._gate.open.wait(timeout=1):
                    continue
                self.ws.update(timeout=1)
                data = self.ws.read_stdout(timeout=0)
                if data:
                    self.loop.call_soon_threadsafe(self.reader.feed_data, data)
                errors = self.ws.read_stderr(timeout=0)
                if errors:
                    self.stderr_tail = (self.stderr_tail + errors)[-4096:]
        except (OSError, ValueError) as exc:
            log.warning("exec stream ended: %s", exc)
        finally:
            self.loop.call_soon_threadsafe(self.reader.feed_eof)

    def write(self, data: bytes) -> None:
        self._pending.append(data)

    async def drain(self) -> None:
        async with self._send_lock:
            if self._pending:
                data, self._pending = b"".join(self._pending), []
                await asyncio.to_thread(self.ws.write_stdin, data)

    def close(self) -> None:
        self.ws.close()


class KubernetesSandbox(Sandbox):
    backend = "kubernetes"

    def __init__(self, owner: KubernetesBackend, name: str, spec: SandboxSpec, channel: WebSocketChannel) -> None:
        self.owner, self.name, self.spec, self.channel = owner, name, spec, channel
        self.agent = AgentClient(channel.reader, channel, name, on_gone=self.agent_gone)
        self.use_address_space = False  # the container's memory limit is a cgroup
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.agent.close()
        await self.owner.delete_pod(self.name)


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(
        self,
        api,
        stream: Callable,
        *,
        namespace: str,
        image: str,
        images: tuple[str, ...],
        runtime_class: str,
        tmp_bytes: int,
        lifetime_seconds: int,
        start_timeout: float,
        cpu_request: str = "250m",
        cpu_limit: str = "2",
    ) -> None:
        """Args:
        api: a kubernetes.client.CoreV1Api (or a test double with the same four methods).
        stream: kubernetes.stream.stream, or a double that opens an exec stream the same way.
        """
        self.api, self.stream, self.namespace = api, stream, namespace
        self.image, self.images, self.runtime_class = image, set(images) | {image}, runtime_class
        self.tmp_bytes, self.lifetime_seconds, self.start_timeout = tmp_bytes, lifetime_seconds, start_timeout
        self.cpu_request, self.cpu_limit = cpu_request, cpu_limit
        self.sources = agent_sources()

    def image_for(self, requested: str) -> str:
        if requested and requested not in self.images:
            raise InvalidArgument(
                "image", f"{requested!r} is not one of the images this service runs: {', '.join(sorted(self.images))}"
            )
        return requested or self.image

    def manifest(self, spec: SandboxSpec, name: str) -> dict[str, Any]:
        return pod_manifest(
            name,
            self.namespace,
            spec.image or self.image,
            spec.limits,
            tmp_bytes=self.tmp_bytes,
            runtime_class=self.runtime_class,
            cpu_request=self.cpu_request,
            cpu_limit=self.cpu_limit,
            lifetime_seconds=self.lifetime_seconds,
            agent_files=self.sources,
        )

    async def start(self, spec: SandboxSpec, name: str) -> Sandbox:
        from kubernetes.client import V1Pod
        from kubernetes.client.rest import ApiException

        started = time.perf_counter()
        pod_name = name.lower().replace("_", "-")
        try:
            await asyncio.to_thread(
                self.api.create_namespaced_pod, self.namespace, V1Pod.from_dict(self.manifest(spec, pod_name))
            )
            await self._wait_running(pod_name)
            ws = await asyncio.to_thread(
                self.stream,
                self.api.connect_get_namespaced_pod_exec,
                pod_name,
                self.namespace,
                command=["python3", "-I", "-S", f"{AGENT_DIR}/agent.py", "--sweep"],
                container="sandbox",
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
                binary=True,
            )
        except ApiException as exc:
            await self.delete_pod(pod_name)
            raise Unavailable(f"the Kubernetes API refused the sandbox pod: {exc.status} {exc.reason}") from None
        except Unavailable:
            await self.delete_pod(pod_name)
            raise
        sandbox = KubernetesSandbox(self, pod_name, spec, WebSocketChannel(ws, asyncio.get_running_loop()))
        try:
            await sandbox.agent.wait_ready(self.start_timeout)
        except (TimeoutError, Unavailable) as exc:
            tail = sandbox.channel.stderr_tail.decode("utf-8", "replace")
            await sandbox.close()
            raise Unavailable(f"the sandbox pod's agent did not start: {tail or exc}") from None
        metrics.SANDBOX_START_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return sandbox

    async def _wait_running(self, pod_name: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            pod = await asyncio.to_thread(self.api.read_namespaced_pod, pod_name, self.namespace)
            phase = pod.status.phase if pod.status is not None else None
            if phase == "Running":
                return
            if phase in ("Failed", "Succeeded"):
                raise Unavailable(
                    f"sandbox pod {pod_name} ended before it ran ({phase}: {pod.status.reason or pod.status.message})"
                )
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"sandbox pod {pod_name} was not running after {self.start_timeout:g} s (phase {phase})"
                )
            await asyncio.sleep(0.25)

    async def delete_pod(self, pod_name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            await asyncio.to_thread(self.api.delete_namespaced_pod, pod_name, self.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete sandbox pod %s: %s %s", pod_name, exc.status, exc.reason)


def client_from_config(config_path: str):
    """CoreV1Api from a kubeconfig path, or from the in-cluster service account when the path is empty."""
    from kubernetes import client, config

    try:
        if config_path:
            config.load_kube_config(config_file=config_path)
        else:
            config.load_incluster_config()
    except (config.ConfigException, OSError) as exc:
        raise Unavailable(f"cannot configure the Kubernetes client ({config_path or 'in-cluster'}): {exc}") from None
    return client.CoreV1Api()
