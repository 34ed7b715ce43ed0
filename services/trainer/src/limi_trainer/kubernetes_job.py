"""A Kubernetes Job that runs `limi-train` on GPU nodes: build, schema-validate, submit.

`job_manifests(spec, train_args)` returns the objects to create: one `batch/v1` Job whose pod
runs `torchrun -m limi_trainer.cli <train_args>` on `gpus_per_node` GPUs, with the data volume
(datasets, base models, outputs, caches) mounted at the same path the arguments use, a memory
`/dev/shm`, GPU tolerations and requests. With several nodes the Job is Indexed (one pod per
node, the completion index is the node rank) and a headless Service gives pod 0 a stable
address for the rendezvous. A failed pod is retried up to `backoff_limit` times and training
resumes from the last checkpoint on the shared volume. `validate` checks every object against
the Kubernetes OpenAPI schema (kubernetes-validate, strict: unknown fields are errors).
`submit` creates them through the official `kubernetes` client. It does not watch the Job.
"""

from __future__ import annotations

import dataclasses
import re

from limi_core.errors import InvalidArgument

KUBERNETES_VERSION = "1.30.0"
RENDEZVOUS_PORT = 29500
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class JobSpec:
    name: str
    image: str
    namespace: str = "default"
    nodes: int = 1
    gpus_per_node: int = 8
    cpu: str = "32"
    memory: str = "512Gi"
    shm_size: str = "64Gi"
    # The PersistentVolumeClaim with datasets, models and outputs; mounted at `mount_path`.
    volume_claim: str = "limi-data"
    mount_path: str = "/data"
    node_selector: tuple[tuple[str, str], ...] = ()
    # (key, operator "Exists" or "Equal", value, effect); GPU nodes are usually tainted.
    tolerations: tuple[tuple[str, str, str, str], ...] = (("nvidia.com/gpu", "Exists", "", "NoSchedule"),)
    service_account: str = ""
    backoff_limit: int = 3
    code_revision: str = ""
    run_id: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or len(self.name) > 52:
            raise InvalidArgument(
                "job_name", "must be a DNS label (lower-case letters, digits, '-') of at most 52 characters"
            )
        if not _NAME.match(self.namespace):
            raise InvalidArgument("namespace", "must be a DNS label")
        if not self.image:
            raise InvalidArgument("image", "is required")
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise InvalidArgument("nodes", "nodes and gpus_per_node must be at least 1")
        if not self.mount_path.startswith("/"):
            raise InvalidArgument("mount_path", "must be an absolute path")


def job_manifests(spec: JobSpec, train_args: list[str]) -> list[dict]:
    """The Service (several nodes only) and the Job, as plain dicts in creation order."""
    labels = {
        "app.kubernetes.io/name": "limi-trainer",
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/instance": spec.name,
    }
    if spec.run_id:
        labels["limi.dev/run-id"] = spec.run_id
    service_name = f"{spec.name}-nodes"
    objects: list[dict] = []
    if spec.nodes > 1:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service_name, "namespace": spec.namespace, "labels": labels},
                "spec": {
                    "clusterIP": "None",
                    "selector": {"batch.kubernetes.io/job-name": spec.name},
                    "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
                    "publishNotReadyAddresses": True,
                },
            }
        )
    objects.append(_job(spec, labels, service_name, train_args))
    return objects


def _job(spec: JobSpec, labels: dict, service_name: str, train_args: list[str]) -> dict:
    if spec.nodes > 1:
        launcher = [
            "torchrun",
            f"--nnodes={spec.nodes}",
            f"--nproc-per-node={spec.gpus_per_node}",
            "--node-rank=$(NODE_RANK)",
            f"--master-addr={spec.name}-0.{service_name}",
            f"--master-port={RENDEZVOUS_PORT}",
        ]
    else:
        launcher = ["torchrun", "--standalone", f"--nproc-per-node={spec.gpus_per_node}"]
    cache = f"{spec.mount_path.rstrip('/')}/.cache"
    env = [
        {"name": "TORCH_EXTENSIONS_DIR", "value": f"{cache}/torch_extensions"},
        {"name": "HF_HOME", "value": f"{cache}/huggingface"},
        {"name": "LIMI_TRAINER_MODELS_DIR", "value": f"{cache}/limi/models"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if spec.code_revision:
        env.append({"name": "LIMI_CODE_REVISION", "value": spec.code_revision})
    if spec.nodes > 1:
        env.append(
            {
                "name": "NODE_RANK",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
                },
            }
        )
    resources = {"nvidia.com/gpu": str(spec.gpus_per_node), "cpu": spec.cpu, "memory": spec.memory}
    container = {
        "name": "trainer",
        "image": spec.image,
        "command": [*launcher, "-m", "limi_trainer.cli"],
        "args": train_args,
        "env": env,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [{"name": "data", "mountPath": spec.mount_path}, {"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if spec.nodes > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}]
    pod: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": spec.volume_claim}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}},
        ],
        "tolerations": [_toleration(*toleration) for toleration in spec.tolerations],
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    if spec.nodes > 1:
        pod["subdomain"] = service_name
    job_spec: dict = {"backoffLimit": spec.backoff_limit, "template": {"metadata": {"labels": labels}, "spec": pod}}
    if spec.nodes > 1:
        job_spec.update(completionMode="Indexed", completions=spec.nodes, parallelism=spec.nodes)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": job_spec,
    }


def _toleration(key: str, operator: str, value: str, effect: str) -> dict:
    toleration = {"key": key, "operator": operator, "effect": effect}
    if operator == "Equal":
        toleration["value"] = value
    return toleration


def validate(objects: list[dict], version: str = KUBERNETES_VERSION) -> None:
    """Check every object against the Kubernetes schema of `version`.

    Raises:
        InvalidArgument: An object does not conform (`field` names its kind).
    """
    import kubernetes_validate

    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(part) for part in exc.path)
            raise InvalidArgument(f"manifest.{obj['kind']}", f"{exc.message} at {path or 'the top level'}") from exc


def to_yaml(objects: list[dict]) -> str:
    import yaml

    return yaml.safe_dump_all(objects, sort_keys=False)


def submit(objects: list[dict], *, kubeconfig: str | None = None, context: str | None = None) -> list[str]:
    """Create the objects through the Kubernetes API; returns `kind/name` of each created one."""
    from kubernetes import client, config

    if kubeconfig or context:
        config.load_kube_config(config_file=kubeconfig, context=context)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    created = []
    for obj in objects:
        namespace = obj["metadata"]["namespace"]
        if obj["kind"] == "Service":
            client.CoreV1Api().create_namespaced_service(namespace, obj)
        elif obj["kind"] == "Job":
            client.BatchV1Api().create_namespaced_job(namespace, obj)
        else:
            raise ValueError(f"cannot submit a {obj['kind']}")
        created.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return created
