"""The cluster-mode policy: a vLLM Job and a Service for one checkpoint, reached inside the cluster.

`policy_manifests(...)` builds the two objects (pure dictionaries, schema-checked in tests):
a Job running the vLLM OpenAI server on the checkpoint, read from the checkpoints
PersistentVolumeClaim mounted read-only at /checkpoints (a checkpoint URI `file:///checkpoints/run/step-9`
is served from that path), with GPUs requested, no service-account token, and a readiness
probe on `/v1/models`; and a ClusterIP Service in front of it. `KubernetesPolicy.serve` creates
them with the official client, waits until the Service answers, yields the endpoint, and deletes
both afterwards. It is the thin layer that cannot be exercised without a cluster here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import urllib.parse
from collections.abc import AsyncIterator

from limi_core.errors import FailedPrecondition, InvalidArgument, Unavailable
from limi_evaluator.policy import Policy, probe_endpoint
from limi_evaluator.settings import EvaluatorSettings

MOUNT = "/checkpoints"
PORT = 8000


def _model_path(checkpoint_uri: str) -> str:
    parsed = urllib.parse.urlparse(checkpoint_uri)
    path = parsed.path if parsed.scheme == "file" else checkpoint_uri
    if parsed.scheme not in ("", "file") or not path.startswith(MOUNT + "/"):
        raise InvalidArgument(
            "checkpoint_uri",
            f"must be a path under {MOUNT}/ (the checkpoints volume) in kubernetes mode, got {checkpoint_uri!r}",
        )
    return path


def policy_manifests(checkpoint_uri: str, settings: EvaluatorSettings) -> tuple[dict, dict]:
    """(Job, Service) that serve `checkpoint_uri` with vLLM in `settings.kubernetes_namespace`."""
    model = _model_path(checkpoint_uri)
    name = "limi-policy-" + hashlib.sha256(checkpoint_uri.encode()).hexdigest()[:12]
    labels = {"app.kubernetes.io/name": "limi-policy", "app.kubernetes.io/part-of": "limi", "limi/policy": name}
    container = {
        "name": "vllm",
        "image": settings.kubernetes_image,
        "args": [
            "--model",
            model,
            "--served-model-name",
            settings.served_model_name,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--max-model-len",
            str(settings.vllm_max_model_len),
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
            *settings.vllm_extra_args,
        ],
        "ports": [{"name": "http", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/v1/models", "port": PORT}, "periodSeconds": 5, "failureThreshold": 3},
        "resources": {"limits": {"nvidia.com/gpu": str(settings.kubernetes_gpus)}} if settings.kubernetes_gpus else {},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "checkpoints", "mountPath": MOUNT, "readOnly": True}],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.kubernetes_namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 600,
            "activeDeadlineSeconds": 7 * 24 * 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "checkpoints",
                            "persistentVolumeClaim": {
                                "claimName": settings.kubernetes_checkpoints_claim,
                                "readOnly": True,
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": settings.kubernetes_namespace, "labels": labels},
        "spec": {"selector": {"limi/policy": name}, "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]},
    }
    return job, service


class KubernetesPolicy:
    def __init__(self, settings: EvaluatorSettings) -> None:
        self.settings = settings

    def _clients(self):
        try:
            from kubernetes import client, config
        except ImportError as exc:
            raise FailedPrecondition("the kubernetes client is not installed: pip install kubernetes") from exc
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return client.BatchV1Api(), client.CoreV1Api()

    @contextlib.asynccontextmanager
    async def serve(self, checkpoint_uri: str) -> AsyncIterator[Policy]:
        job, service = policy_manifests(checkpoint_uri, self.settings)
        namespace, name = self.settings.kubernetes_namespace, job["metadata"]["name"]
        batch, core = await asyncio.to_thread(self._clients)
        await asyncio.to_thread(batch.create_namespaced_job, namespace, job)
        try:
            await asyncio.to_thread(core.create_namespaced_service, namespace, service)
            endpoint = f"http://{name}.{namespace}.svc:{PORT}/v1"
            deadline = time.monotonic() + self.settings.vllm_start_timeout_seconds
            while True:
                try:
                    await probe_endpoint(endpoint, attempts=1)
                    break
                except Unavailable:
                    if time.monotonic() > deadline:
                        raise Unavailable(
                            f"the policy Job {namespace}/{name} did not serve {endpoint} within "
                            f"{self.settings.vllm_start_timeout_seconds:g} s"
                        ) from None
                    await asyncio.sleep(5)
            yield Policy(endpoint, self.settings.served_model_name, f"Kubernetes Job {namespace}/{name}")
        finally:
            await asyncio.to_thread(_delete, core.delete_namespaced_service, name, namespace)
            await asyncio.to_thread(
                _delete, batch.delete_namespaced_job, name, namespace, propagation_policy="Foreground"
            )


def _delete(method, name: str, namespace: str, **kwargs) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        method(name, namespace, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise
