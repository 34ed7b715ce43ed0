"""What a user runs against an installed release: `helm test` and `kubectl create job --from=cronjob/...`.

No Kubernetes API server can run on the CI machines, so each command is exercised as far as it
can be without one, with the real tools and the chart rendered by the real `helm template`:

- `helm test` runs the chart's test pod, whose command is `python check_release.py --service
  ... --nats-url ...` (the script comes from the rendered ConfigMap). Here that exact command,
  with the cluster addresses swapped for local ones, runs against the four services of the
  default install started as real processes on a real nats-server, and must pass; against a
  service that says NOT_SERVING, a port nobody listens on and a NATS without limi's streams it
  must fail and name each.
- `kubectl create job --from=cronjob/limi-train run-1 --dry-run=client -o yaml` cannot work
  offline: kubectl resolves `cronjob/limi-train` through API discovery and reads the CronJob
  from the server (`--dry-run=client` only skips the final create), and `kubectl create -f` or
  `kubectl apply -f` with `--dry-run=client` need discovery too ("unable to recognize ... connection
  refused"). So the real kubectl talks to a small API double on loopback that serves only
  discovery of batch/v1 and the rendered CronJobs, and the Job it prints is validated like every
  other object. That the API server then adds the `batch.kubernetes.io/job-name` label that
  JOB_NAME reads, and that a Job controller runs the pod, only a cluster can show.
"""

from __future__ import annotations

import asyncio
import copy
import http.server
import json
import pathlib
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from limi_core import bus
from limi_core.processes import free_port

CLOSED = f"127.0.0.1:{free_port()}"


def only(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def installed(helm) -> list[dict]:
    """The objects of `helm install limi deploy/helm/limi -n limi` with the default values."""
    return helm.render()


def check_release_command(
    objects: list[dict], folder: pathlib.Path, addresses: dict[str, str], nats_url: str, timeout: int
) -> list[str]:
    """The helm test pod's command and arguments, to run here.

    The script is the one in the rendered ConfigMap; each service's address becomes the local one in
    `addresses` (a service left out of `addresses` is left out of the check), and so does the NATS URL.
    """
    pod = only(objects, "Pod", "limi-check-release")["spec"]["containers"][0]
    script = folder / pod["command"][1].rpartition("/")[2]
    script.write_text(only(objects, "ConfigMap", "limi-check-release")["data"][script.name])
    args = []
    for arg in pod["args"]:
        option, _, value = arg.partition("=")
        if option == "--service":
            name = value.split("=")[0]
            if name not in addresses:
                continue
            value = f"{name}={addresses[name]}"
        value = {"--nats-url": nats_url, "--timeout": str(timeout)}.get(option, value)
        args.append(f"{option}={value}")
    assert len(args) == len(addresses) + 2, f"the pod's arguments changed: {pod['args']}"
    return [sys.executable, str(script), *args]


def test_helm_test_passes_against_the_services_of_a_default_install(installed, service_process, nats_server, tmp_path):
    """The services start as the chart wires them; the check waits for them and for the streams they create."""
    sandbox = service_process("sandbox", env={"LIMI_SANDBOX_BACKENDS": "bwrap", "LIMI_SANDBOX_POOL_SIZE": "0"})
    started = {
        "curator": service_process("curator"),
        "sandbox": sandbox,
        "rollout": service_process(
            "rollout",
            env={
                "LIMI_ROLLOUT_POLICY_ENDPOINT": f"http://{CLOSED}/v1",
                "LIMI_ROLLOUT_SANDBOX_ADDRESS": sandbox.grpc_address,
                "LIMI_ROLLOUT_CONSUME_QUERIES": "false",
            },
        ),
        "evaluator": service_process(
            "evaluator",
            env={
                "LIMI_EVALUATOR_CONSUME_CHECKPOINTS": "false",
                "LIMI_EVALUATOR_SANDBOX_ADDRESS": sandbox.grpc_address,
                "LIMI_EVALUATOR_ROLLOUT_ADDRESS": CLOSED,
            },
        ),
    }
    addresses = {name: service.grpc_address for name, service in started.items()}
    command = check_release_command(installed, tmp_path, addresses, nats_server.url, timeout=90)
    check = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while check.poll() is None:
        dead = [name for name, service in started.items() if service.process.poll() is not None]
        if dead:
            check.kill()
            pytest.fail(
                f"{dead} exited before the check passed:\n" + "\n".join(started[name].log()[-3000:] for name in dead)
            )
        time.sleep(0.2)
    output = check.stdout.read()
    assert check.returncode == 0, output
    lines = output.splitlines()
    assert len(lines) == 5 and all(line.startswith("ok ") for line in lines), output
    assert {line.split()[1] for line in lines} == {*started, "nats"}
    assert f"the {len(bus.STREAMS)} limi streams exist" in lines[-1]


@pytest.fixture
def health_server():
    """Factory: a real gRPC server whose health service reports the given status; returns its address."""
    servers = []

    def start(status: int) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        servicer.set("", status)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_helm_test_fails_and_names_each_service_and_stream_that_is_not_there(
    installed, health_server, nats_server, tmp_path
):
    serving, not_serving = (
        health_server(health_pb2.HealthCheckResponse.SERVING),
        health_server(health_pb2.HealthCheckResponse.NOT_SERVING),
    )
    addresses = {"curator": not_serving, "sandbox": CLOSED, "rollout": serving, "evaluator": not_serving}
    command = check_release_command(installed, tmp_path, addresses, nats_server.url, timeout=2)
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    by_name = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert by_name["curator"].startswith("FAILED") and by_name["curator"].endswith("NOT_SERVING")
    assert by_name["sandbox"].startswith("FAILED") and by_name["sandbox"].endswith("UNREACHABLE")
    assert by_name["rollout"].startswith("ok") and by_name["rollout"].endswith("SERVING")
    assert by_name["nats"].startswith("FAILED")
    for spec in bus.STREAMS:
        assert f"stream {spec.name}:" in by_name["nats"]


def test_helm_test_passes_once_the_streams_exist(installed, nats_server, tmp_path):
    """Only NATS asked (no --service): JetStream with limi's streams, made as the services make them."""

    async def create_streams() -> None:
        nc = await bus.connect(nats_server.url, "test", connect_timeout=10)
        await bus.ensure_streams(nc.jetstream())
        await nc.close()

    asyncio.run(create_streams())
    command = check_release_command(installed, tmp_path, {}, nats_server.url, timeout=10)
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("ok      nats"), result.stdout + result.stderr


# --- kubectl create job --from=cronjob/... ---------------------------------------------------------


class KubernetesApiDouble(http.server.ThreadingHTTPServer):
    """Just enough of an API server for `kubectl create job --from=cronjob/...`: discovery and the CronJobs.

    It answers legacy discovery (/api, /apis, /api/v1, /apis/batch/v1) and GET of the CronJobs it
    holds, 404 for anything else, and records every request so a test can see what kubectl asked.
    """

    def __init__(self, cronjobs: list[dict]):
        self.cronjobs = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in cronjobs}
        self.requests: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), ApiDoubleHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str) -> dict | None:
        batch = {"groupVersion": "batch/v1", "version": "v1"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [{"name": "batch", "versions": [batch], "preferredVersion": batch}],
            }
        if path == "/api/v1":
            return {"kind": "APIResourceList", "groupVersion": "v1", "resources": []}
        if path == "/apis/batch/v1":
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": "batch/v1",
                "resources": [
                    {
                        "name": "cronjobs",
                        "singularName": "cronjob",
                        "namespaced": True,
                        "kind": "CronJob",
                        "verbs": ["get"],
                    },
                    {
                        "name": "jobs",
                        "singularName": "job",
                        "namespaced": True,
                        "kind": "Job",
                        "verbs": ["get", "create"],
                    },
                ],
            }
        parts = path.strip("/").split("/")
        if parts[:3] == ["apis", "batch", "v1"] and len(parts) == 7 and parts[5] == "cronjobs":
            cronjob = self.cronjobs.get((parts[4], parts[6]))
            if cronjob is not None:
                return {
                    **cronjob,
                    "metadata": {**cronjob["metadata"], "uid": f"uid-{parts[6]}", "resourceVersion": "1"},
                }
        return None


class ApiDoubleHandler(http.server.BaseHTTPRequestHandler):
    server: KubernetesApiDouble

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        path = self.path.split("?")[0]
        self.server.requests.append(("GET", path))
        body = self.server.answer(path)
        if body is None:
            self.reply(
                404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            )
        else:
            self.reply(200, body)

    def do_POST(self) -> None:  # noqa: N802
        self.server.requests.append(("POST", self.path.split("?")[0]))
        self.reply(405, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 405})

    def reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def api_double(installed):
    server = KubernetesApiDouble([o for o in installed if o["kind"] == "CronJob"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def quantities_as_text(pod: dict) -> dict:
    """A pod spec as kubectl prints it after decoding it into its types: resource quantities as strings."""
    pod = copy.deepcopy(pod)
    for container in pod["containers"] + pod.get("initContainers", []):
        for kind in ("requests", "limits"):
            container["resources"][kind] = {name: str(amount) for name, amount in container["resources"][kind].items()}
    return pod


def kubectl_offline(kubectl: str, tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "no-cluster")}
    return subprocess.run([kubectl, *args], capture_output=True, text=True, env=env, timeout=60)


def test_kubectl_create_job_from_cronjob_needs_an_api_server(kubectl, tmp_path):
    """Why the next test brings an API double: with no server, kubectl cannot even find the CronJob."""
    result = kubectl_offline(
        kubectl,
        tmp_path,
        "--server",
        f"http://{CLOSED}",
        "-n",
        "limi",
        "create",
        "job",
        "run-1",
        "--from=cronjob/limi-train",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    assert result.returncode != 0 and "connection refused" in result.stderr and not result.stdout


@pytest.mark.parametrize("cronjob_name", ["limi-train", "limi-evaluate"])
def test_kubectl_create_job_from_each_cronjob_makes_a_valid_job(
    installed, api_double, kubectl, helm, tmp_path, cronjob_name
):
    """`kubectl create job --from=cronjob/<release>-train <name>` as deploy/README.md and NOTES.txt tell users to run it."""
    cronjob = only(installed, "CronJob", cronjob_name)
    assert cronjob["spec"]["suspend"] is True and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    result = kubectl_offline(
        kubectl,
        tmp_path,
        "--server",
        api_double.url,
        "-n",
        "limi",
        "create",
        "job",
        "run-1",
        f"--from=cronjob/{cronjob_name}",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    assert result.returncode == 0, result.stderr
    assert ("GET", f"/apis/batch/v1/namespaces/limi/cronjobs/{cronjob_name}") in api_double.requests
    assert not [r for r in api_double.requests if r[0] != "GET"], "--dry-run=client must not create anything"
    job = yaml.safe_load(result.stdout)
    kubernetes_validate.validate(job, helm.kube_version, strict=True)
    template = cronjob["spec"]["jobTemplate"]
    assert (job["kind"], job["metadata"]["name"], job["metadata"]["namespace"]) == ("Job", "run-1", "limi")
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert job["metadata"]["labels"] == template["metadata"]["labels"]
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": cronjob_name,
            "uid": f"uid-{cronjob_name}",
            "controller": True,
        }
    ]
    assert {k: v for k, v in job["spec"].items() if k != "template"} == {
        k: v for k, v in template["spec"].items() if k != "template"
    }
    assert job["spec"]["template"]["metadata"] == template["spec"]["template"]["metadata"]
    pod = job["spec"]["template"]["spec"]
    assert pod == quantities_as_text(template["spec"]["template"]["spec"])
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["env"][0] == {
        "name": "JOB_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}},
    }
