"""The Helm chart deploy/helm/limi, rendered and checked without helm or a Kubernetes API server.

The chart is rendered by deploy/helm/render, a small Go program built once per session from
Debian's Go sources (text/template plus sprig, with Helm's own functions), for the default values
and for values-production-gpu.yaml. Every object is validated with kubernetes-validate --strict
for Kubernetes 1.37; then the tests check what the schemas cannot: restricted security contexts,
native gRPC probes, resources, the sandbox's RBAC scope and NetworkPolicy, that selectors and
addresses point at objects the chart creates, that required values fail with a clear message,
and that values.schema.json rejects bad values. The renderer itself is checked against Helm's
documented behaviour on a scratch chart.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml

from limi_core.processes import nats_server_binary

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "limi"
PRODUCTION = CHART / "values-production-gpu.yaml"
KUBERNETES = "1.37.0"
GOPATH = pathlib.Path("/usr/share/gocode")
SETUP_HINT = "run scripts/setup (it installs golang-go, golang-github-masterminds-sprig-dev and golang-gopkg-yaml.v2-dev)"


@pytest.fixture(scope="session")
def renderer(tmp_path_factory) -> pathlib.Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"the Go compiler is missing, so the chart cannot be rendered: {SETUP_HINT}")
    if not (GOPATH / "src/github.com/Masterminds/sprig").is_dir() or not (GOPATH / "src/gopkg.in/yaml.v2").is_dir():
        pytest.fail(f"Debian's Go sources of sprig or yaml.v2 are missing under {GOPATH}: {SETUP_HINT}")
    build = tmp_path_factory.mktemp("render")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(build / "cache"), "GOFLAGS": "", "CGO_ENABLED": "0"}
    subprocess.run([go, "build", "-o", str(build / "render"), "./deploy/helm/render"], cwd=ROOT, env=env, check=True, timeout=300)
    return build / "render"


def run_render(renderer, *args: str, chart: pathlib.Path = CHART) -> subprocess.CompletedProcess:
    return subprocess.run([str(renderer), "--chart", str(chart), "--kube-version", KUBERNETES, *args], capture_output=True, text=True, timeout=60)


def render(renderer, *values: pathlib.Path, name: str = "limi", namespace: str = "limi") -> list[dict]:
    result = run_render(renderer, "--name", name, "--namespace", namespace, *[f"--values={v}" for v in values])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def values_file(tmp_path: pathlib.Path, values: dict) -> pathlib.Path:
    path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="session", params=["default", "production"])
def profile(request, renderer) -> tuple[str, list[dict]]:
    return request.param, render(renderer, *([PRODUCTION] if request.param == "production" else []))


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_templates(objects: list[dict]) -> dict[str, dict]:
    """Every pod spec the chart creates, by "Kind/name"."""
    pods = {}
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            pods[f"{o['kind']}/{o['metadata']['name']}"] = o["spec"]["template"]
        elif o["kind"] == "CronJob":
            pods[f"CronJob/{o['metadata']['name']}"] = o["spec"]["jobTemplate"]["spec"]["template"]
    return pods


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- Kubernetes schemas -------------------------------------------------------------------------

def test_every_object_is_valid_for_kubernetes_in_strict_mode(profile):
    name, objects = profile
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "StatefulSet", "CronJob", "Service", "PodDisruptionBudget", "NetworkPolicy", "Role", "RoleBinding",
            "Namespace", "LimitRange", "ResourceQuota", "ConfigMap", "PersistentVolumeClaim", "ServiceAccount"} <= kinds
    for o in objects:
        if o["kind"] == "ServiceMonitor":  # a CRD: checked field by field in test_service_monitor
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {o['kind']}/{o['metadata']['name']} at {'.'.join(map(str, exc.path))}: {exc.message}")


def test_each_template_file_renders_at_most_one_object(renderer):
    result = run_render(renderer, f"--values={PRODUCTION}")
    sources = [line for line in result.stdout.splitlines() if line.startswith("# Source: ")]
    assert len(sources) == len(set(sources)) > 30


def test_a_job_created_from_each_cronjob_is_valid(profile):
    """What `kubectl create job --from=cronjob/<release>-train <name>` submits: the job template as a Job."""
    _name, objects = profile
    for cronjob_name in ("limi-train", "limi-evaluate"):
        cronjob = one(objects, "CronJob", cronjob_name)
        assert cronjob["spec"]["suspend"] is True and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        template = cronjob["spec"]["jobTemplate"]
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "run-1", "labels": template["metadata"]["labels"], "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
               "spec": template["spec"]}
        kubernetes_validate.validate(job, KUBERNETES, strict=True)
        pod = template["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        job_name = pod["containers"][0]["env"][0]
        assert job_name == {"name": "JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}}


def test_the_jobs_run_the_one_shot_clis_with_arguments_they_accept(profile):
    from importlib.metadata import entry_points

    import limi_evaluator.cli
    import limi_trainer.cli

    name, objects = profile
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["limi-train"].startswith("limi_trainer.cli:") and scripts["limi-evaluate"].startswith("limi_evaluator.cli:")
    train = one(objects, "CronJob", "limi-train")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    gpus = train["resources"]["limits"]["nvidia.com/gpu"]
    if gpus > 1:
        assert train["command"] == ["torchrun", "--standalone", f"--nproc-per-node={gpus}", "-m", "limi_trainer.cli"]
        usage = subprocess.run([sys.executable, "-m", "limi_trainer.cli", "--help"], capture_output=True, text=True, timeout=60)
        assert usage.returncode == 0 and usage.stdout.startswith("usage: limi-train")
    else:
        assert train["command"] == ["limi-train"]
    args = [a.replace("$(JOB_NAME)", "run-1") for a in train["args"]] + ["--dataset", "/data/curator/datasets/d.jsonl"]
    parsed = limi_trainer.cli.build_parser().parse_args(args)
    assert str(parsed.output_dir) == "/data/trainer/jobs/run-1" and parsed.preset == "limi"
    evaluate = one(objects, "CronJob", "limi-evaluate")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert evaluate["command"] == ["limi-evaluate"]
    parsed = limi_evaluator.cli.build_parser().parse_args(evaluate["args"])
    assert parsed.endpoint == "http://limi-vllm:8000/v1" and parsed.benchmark == ["limi-basics"]


# --- security, probes, resources ----------------------------------------------------------------

def test_every_pod_runs_under_the_restricted_pod_security_standard(profile):
    _name, objects = profile
    for where, template in pod_templates(objects).items():
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert not any("hostPath" in v for v in pod.get("volumes", [])), where
        assert pod["automountServiceAccountToken"] is (where == "Deployment/limi-sandbox"), where
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context.get("privileged") is not True, where
            assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"} or container["name"] == "nats", where
        for volume in pod.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{where}: emptyDir {volume['name']} has no sizeLimit"


def test_every_container_requests_and_limits_cpu_memory_and_ephemeral_storage(profile):
    name, objects = profile
    gpus = {"Deployment/limi-vllm": (1, 4), "CronJob/limi-train": (1, 8), "CronJob/limi-evaluate": (1, 4), "Deployment/limi-trainer": (None, 8)}
    for where, template in pod_templates(objects).items():
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory", "ephemeral-storage"} <= set(resources[kind]), f"{where}: {kind}"
            if where in gpus:
                expected = gpus[where][name == "production"]
                assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == expected, where
            else:
                assert "nvidia.com/gpu" not in resources["limits"], where


def test_every_pods_scratch_volumes_fit_in_its_limits(profile):
    """emptyDir on disk counts against the pod's ephemeral storage, in memory against its memory: the kubelet evicts otherwise."""
    _name, objects = profile
    for where, template in pod_templates(objects).items():
        pod = template["spec"]
        limits = [c["resources"]["limits"] for c in pod["containers"]]
        disk = sum(quantity(v["emptyDir"]["sizeLimit"]) for v in pod.get("volumes", []) if v.get("emptyDir", {}).get("medium") is None and "emptyDir" in v)
        memory = sum(quantity(v["emptyDir"]["sizeLimit"]) for v in pod.get("volumes", []) if v.get("emptyDir", {}).get("medium") == "Memory")
        assert disk <= sum(quantity(l["ephemeral-storage"]) for l in limits), f"{where}: emptyDir volumes exceed its ephemeral-storage limit"
        assert memory < sum(quantity(l["memory"]) for l in limits), f"{where}: in-memory volumes exceed its memory limit"


def test_services_have_native_grpc_probes_on_their_health_port(profile):
    name, objects = profile
    services = ("curator", "sandbox", "rollout", "evaluator") + (("trainer",) if name == "production" else ())
    for service in services:
        pod = one(objects, "Deployment", f"limi-{service}")["spec"]["template"]["spec"]
        container = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = env_of(container)
        prefix = f"LIMI_{service.upper()}_"
        assert env[prefix + "GRPC_ADDRESS"] == f"0.0.0.0:{ports['grpc']}"
        assert env[prefix + "METRICS_ADDRESS"] == f"0.0.0.0:{ports['metrics']}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": ports["grpc"]}, f"{service} {probe}"
        assert pod["terminationGracePeriodSeconds"] > float(env["LIMI_SHUTDOWN_GRACE_SECONDS"])
        assert container["command"] == ["python", "-m", f"limi_{service}"]
        # Helm reads numbers as float64: 16777216 must not come out as 1.6777216e+07.
        assert env["LIMI_MAX_MESSAGE_BYTES"] == "16777216"


def test_every_address_and_selector_points_at_an_object_of_the_chart(profile):
    _name, objects = profile
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    pods = pod_templates(objects)
    for service in services.values():
        assert any(matches(service["spec"]["selector"], t["metadata"]["labels"]) for t in pods.values()), service["metadata"]["name"]
    for pdb in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        assert any(matches(pdb["spec"]["selector"]["matchLabels"], t["metadata"]["labels"]) for t in pods.values())
    for where, template in pods.items():
        for container in template["spec"]["containers"]:
            for variable, value in env_of(container).items():
                if value and (variable.endswith(("_SANDBOX_ADDRESS", "_ROLLOUT_ADDRESS")) or variable in ("LIMI_NATS_URL", "LIMI_ROLLOUT_POLICY_ENDPOINT")):
                    host, port = value.split("://")[-1].split("/")[0].rsplit(":", 1)
                    assert host in services, f"{where} {variable}={value}: no such Service"
                    assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]], f"{where} {variable}={value}"
    rollout = env_of(one(objects, "Deployment", "limi-rollout")["spec"]["template"]["spec"]["containers"][0])
    vllm_args = one(objects, "Deployment", "limi-vllm")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--served-model-name={rollout['LIMI_ROLLOUT_POLICY_MODEL']}" in vllm_args


# --- the sandbox ---------------------------------------------------------------------------------

def test_only_the_sandbox_service_may_manage_pods_and_only_in_its_namespace(profile):
    _name, objects = profile
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    (role,) = [o for o in objects if o["kind"] == "Role"]
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "limi-sandbox"
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {(("",), ("pods",)): {"create", "get", "list", "watch", "delete"},
                     (("",), ("pods/exec",)): {"create", "get"}, (("",), ("pods/log",)): {"get"}}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "limi-sandbox", "namespace": "limi"}]
    users = [where for where, t in pod_templates(objects).items() if t["spec"]["serviceAccountName"] == "limi-sandbox"]
    assert users == ["Deployment/limi-sandbox"]
    sandbox_env = env_of(one(objects, "Deployment", "limi-sandbox")["spec"]["template"]["spec"]["containers"][0])
    assert sandbox_env["LIMI_SANDBOX_BACKENDS"] == "kubernetes"
    assert sandbox_env["LIMI_SANDBOX_KUBERNETES_NAMESPACE"] == "limi-sandbox"


def test_session_pods_are_locked_down_by_namespace_policy_limits_and_network(profile):
    name, objects = profile
    namespace = one(objects, "Namespace", "limi-sandbox")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    policy = one(objects, "NetworkPolicy", "limi-sandbox-sessions")
    sandbox_pod_labels = one(objects, "Deployment", "limi-sandbox")["spec"]["template"]["metadata"]["labels"]
    assert policy["metadata"]["namespace"] == "limi-sandbox"
    assert policy["spec"]["podSelector"] == {}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["spec"]["egress"] == []
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "limi"}
    assert matches(peer["podSelector"]["matchLabels"], sandbox_pod_labels)
    assert "ports" not in rule
    limits = one(objects, "LimitRange", "limi-sandbox-sessions")["spec"]["limits"][0]
    for key in ("default", "defaultRequest", "max"):
        assert set(limits[key]) == {"cpu", "memory", "ephemeral-storage"}
    assert "pods" in one(objects, "ResourceQuota", "limi-sandbox-sessions")["spec"]["hard"]
    sandbox_env = env_of(one(objects, "Deployment", "limi-sandbox")["spec"]["template"]["spec"]["containers"][0])
    assert sandbox_env["LIMI_SANDBOX_KUBERNETES_RUNTIME_CLASS"] == ("gvisor" if name == "production" else "")


UNITS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value) -> float:
    text = str(value)
    for suffix in sorted(UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * UNITS[suffix]
    return float(text)


def test_session_pods_of_the_sandbox_service_fit_the_namespace_limits_and_quota(profile):
    """The pod the sandbox service creates for a session (its own manifest, default limits) against the chart."""
    from limi_sandbox.backends.kubernetes import agent_sources, pod_manifest
    from limi_sandbox.limits import default_limits
    from limi_sandbox.settings import SandboxSettings

    _name, objects = profile
    env = env_of(one(objects, "Deployment", "limi-sandbox")["spec"]["template"]["spec"]["containers"][0])
    settings = SandboxSettings(max_sessions=int(env["LIMI_SANDBOX_MAX_SESSIONS"]), kubernetes_pool_size=int(env["LIMI_SANDBOX_KUBERNETES_POOL_SIZE"]))
    pod = pod_manifest("sbx-1", env["LIMI_SANDBOX_KUBERNETES_NAMESPACE"], env["LIMI_SANDBOX_KUBERNETES_IMAGE"], default_limits(settings),
                       tmp_bytes=settings.tmp_bytes, runtime_class=env["LIMI_SANDBOX_KUBERNETES_RUNTIME_CLASS"], cpu_request="250m",
                       cpu_limit="2", lifetime_seconds=3600, agent_files=agent_sources())
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    assert pod["metadata"]["namespace"] == one(objects, "NetworkPolicy", "limi-sandbox-sessions")["metadata"]["namespace"]
    resources = pod["spec"]["containers"][0]["resources"]
    maximum = one(objects, "LimitRange", "limi-sandbox-sessions")["spec"]["limits"][0]["max"]
    for resource, limit in resources["limits"].items():
        assert quantity(limit) <= quantity(maximum[resource]), f"a default session pod's {resource} limit exceeds the LimitRange"
    hard = one(objects, "ResourceQuota", "limi-sandbox-sessions")["spec"]["hard"]
    pods = settings.max_sessions + settings.kubernetes_pool_size
    assert pods <= quantity(hard["pods"])
    for kind in ("requests", "limits"):
        for resource, amount in resources[kind].items():
            assert pods * quantity(amount) <= quantity(hard[f"{kind}.{resource}"]), f"{pods} session pods exceed the quota's {kind}.{resource}"


def test_release_name_and_namespace_flow_into_names_policies_and_bindings(renderer):
    objects = render(renderer, name="prod", namespace="ml")
    assert one(objects, "CronJob", "prod-train") and one(objects, "CronJob", "prod-evaluate")
    policy = one(objects, "NetworkPolicy", "prod-sandbox-sessions")
    assert policy["metadata"]["namespace"] == "prod-sandbox"
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ml"}
    assert one(objects, "RoleBinding", "prod-sandbox-sessions")["subjects"][0]["namespace"] == "ml"
    assert {o["metadata"]["namespace"] for o in objects if o["kind"] not in ("Namespace",)} == {"ml", "prod-sandbox"}


# --- NATS, vLLM, monitoring -----------------------------------------------------------------------

def test_nats_keeps_jetstream_on_a_volume_and_its_config_parses(profile, tmp_path):
    name, objects = profile
    statefulset = one(objects, "StatefulSet", "limi-nats")
    replicas = 3 if name == "production" else 1
    assert statefulset["spec"]["replicas"] == replicas
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    conf = one(objects, "ConfigMap", "limi-nats")["data"]["nats.conf"]
    assert f"store_dir: {mounts[claim['metadata']['name']]}/" in conf and "sync_interval: always" in conf
    assert conf.count("nats://limi-nats-") == (replicas if replicas > 1 else 0)
    # Debian's nats-server 2.9 predates sync_interval (2.10); everything else must parse.
    local = conf.replace("/data/jetstream", str(tmp_path / "js")).replace("/var/run/nats", str(tmp_path))
    local = "\n".join(line for line in local.splitlines() if "sync_interval" not in line)
    (tmp_path / "nats.conf").write_text(local)
    check = subprocess.run([nats_server_binary(), "-c", str(tmp_path / "nats.conf"), "-t"], capture_output=True, text=True,
                           env={**os.environ, "SERVER_NAME": "limi-nats-0"}, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_vllm_serves_the_official_image_with_gpus_and_a_model_source(profile):
    name, objects = profile
    container = one(objects, "Deployment", "limi-vllm")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("vllm/vllm-openai:")
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert f"--tensor-parallel-size={gpus}" in container["args"] and "--enable-auto-tool-choice" in container["args"]
    volumes = {v["name"]: v for v in one(objects, "Deployment", "limi-vllm")["spec"]["template"]["spec"]["volumes"]}
    if name == "production":
        assert "--model=/models/GLM-4.5-Air" in container["args"]
        assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    else:
        assert "--model=Qwen/Qwen3-8B" in container["args"] and "models" not in volumes


def test_service_monitor_scrapes_named_ports_of_the_chart_services(renderer):
    objects = render(renderer, PRODUCTION)
    monitor = one(objects, "ServiceMonitor", "limi")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selected = [o for o in objects if o["kind"] == "Service" and matches(monitor["spec"]["selector"]["matchLabels"], o["metadata"]["labels"])]
    port_names = {p["name"] for s in selected for p in s["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) == {"port", "path", "interval", "honorLabels"}
        assert endpoint["port"] in port_names and endpoint["honorLabels"] is True
    assert not [o for o in render(renderer) if o["kind"] == "ServiceMonitor"]


def test_dashboards_configmap_carries_every_dashboard_for_the_grafana_sidecar(profile):
    _name, objects = profile
    configmap = one(objects, "ConfigMap", "limi-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert sorted(configmap["data"]) == [f.name for f in files]
    for file in files:
        assert json.loads(configmap["data"][file.name]) == json.loads(file.read_text())


# --- values: required, schema, docs ---------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"vllm": {"enabled": False}}, "policy.endpoint is required when vllm.enabled is false"),
    ({"nats": {"enabled": False}}, "nats.url is required when nats.enabled is false"),
    ({"storage": {"create": False}}, "storage.existingClaim is required when storage.create is false"),
    ({"vllm": {"model": {"source": "volume"}}}, "vllm.model.existingClaim is required when vllm.model.source is volume"),
    ({"vllm": {"model": {"name": ""}}}, "vllm.model.name is required"),
    ({"trainer": {"enabled": True, "baseModel": ""}}, "trainer.baseModel is required when trainer.enabled is true"),
])
def test_a_missing_required_value_stops_rendering_with_a_clear_message(renderer, tmp_path, values, message):
    result = run_render(renderer, f"--values={values_file(tmp_path, values)}")
    assert result.returncode != 0 and not result.stdout
    assert message in result.stderr and "execution error at (limi/templates/" in result.stderr


def test_required_values_once_set_are_used(renderer, tmp_path):
    values = {"vllm": {"enabled": False}, "policy": {"endpoint": "https://llm.example.com/v1", "model": "glm"},
              "nats": {"enabled": False, "url": "nats://nats.infra:4222"}, "storage": {"create": False, "existingClaim": "shared"}}
    objects = render(renderer, values_file(tmp_path, values))
    env = env_of(one(objects, "Deployment", "limi-rollout")["spec"]["template"]["spec"]["containers"][0])
    assert (env["LIMI_ROLLOUT_POLICY_ENDPOINT"], env["LIMI_ROLLOUT_POLICY_MODEL"], env["LIMI_NATS_URL"]) == ("https://llm.example.com/v1", "glm", "nats://nats.infra:4222")
    assert not [o for o in objects if o["metadata"]["name"] in ("limi-vllm", "limi-nats", "limi-data")]
    curator_volumes = one(objects, "Deployment", "limi-curator")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}} in curator_volumes


@pytest.fixture(scope="module")
def schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def merged_values(renderer, *files: pathlib.Path) -> dict:
    result = run_render(renderer, "--show-values", *[f"--values={f}" for f in files])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_schema_accepts_the_default_and_production_values(renderer, schema):
    for files in ((), (PRODUCTION,)):
        assert [e.message for e in schema.iter_errors(merged_values(renderer, *files))] == []


@pytest.mark.parametrize("bad", [
    {"curator": {"replicas": "two"}},
    {"common": {"logLevel": "TRACE"}},
    {"images": {"pullPolicy": "Sometimes"}},
    {"nats": {"replicas": 2}},
    {"nats": {"jetstream": {"syncInterval": "often"}}},
    {"vllm": {"model": {"source": "s3"}}},
    {"vllm": {"gpus": 0}},
    {"rollout": {"resources": {"limits": {"cpu": "lots", "memory": "1Gi", "ephemeral-storage": "1Gi"}}}},
    {"sandbox": {"sessions": {"namespace": "Not_A_Namespace"}}},
    {"sandbox": {"env": {"LIMI_SANDBOX_POOL_SIZE": {"nested": 1}}}},
    {"train": {"schedule": "every day"}},
    {"evaluator": {"replicaCount": 2}},
    {"vllm": {"enabled": False}},
])
def test_the_schema_rejects_bad_values(renderer, schema, tmp_path, bad):
    assert list(schema.iter_errors(merged_values(renderer, values_file(tmp_path, bad)))), f"accepted {bad}"


def test_every_value_is_documented():
    undocumented, documented_parents, comments = [], [], []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        if not stripped or stripped.startswith("- "):
            comments = []
            continue
        indent = len(line) - len(line.lstrip())
        documented_parents = [(i, d) for i, d in documented_parents if i < indent]
        documented = any(c.startswith("# --") for c in comments) or any(d for _i, d in documented_parents)
        key, _, value = stripped.partition(":")
        if value.strip() and not documented:
            undocumented.append(key)
        documented_parents.append((indent, documented))
        comments = []
    assert undocumented == []


# --- the renderer against Helm's documented behaviour ----------------------------------------------

SCRATCH_TEMPLATE = """\
{{- define "scratch.name" -}}{{ .Chart.Name }}-{{ .Release.Name }}{{- end -}}
include: {{ include "scratch.name" . }}
tpl: {{ tpl .Values.greeting . }}
big: {{ .Values.big }}
int: {{ .Values.big | int64 }}
missing: "{{ .Values.nothing }}"
dropped: {{ hasKey .Values "dropme" }}
kept: {{ .Values.nested.keep }} {{ .Values.nested.change }}
toYaml: {{ .Values.nested | toYaml | nindent 2 }}
toJson: {{ .Values.nested | toJson }}
fromYaml: {{ (fromYaml "a: [1, 2]").a | len }} {{ hasKey (fromYaml "a: [") "Error" }}
fromJson: {{ (fromJson "{\\"x\\": 5}").x }}
lookup: {{ lookup "v1" "Secret" "ns" "name" | len }}
kube: {{ .Capabilities.KubeVersion.Version }} {{ .Capabilities.KubeVersion.Minor }} {{ .Capabilities.APIVersions.Has "apps/v1" }} {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}
file: {{ .Files.Get "files/a.txt" | trim }}
glob: {{ range $path, $_ := .Files.Glob "files/*.txt" }}{{ $path }} {{ end }}
config: {{ (.Files.Glob "files/b.*").AsConfig | nindent 2 }}
template: {{ .Template.Name }}
"""


@pytest.fixture
def scratch_chart(tmp_path) -> pathlib.Path:
    chart = tmp_path / "scratch"
    (chart / "templates").mkdir(parents=True)
    (chart / "files").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: scratch\nversion: 1.0.0\nkubeVersion: '>=1.30.0-0'\n")
    (chart / "values.yaml").write_text("greeting: 'hi {{ .Release.Name }}'\nbig: 1000000\ndropme: 1\nnested: {keep: 1, change: 2, z: [a, b]}\n")
    (chart / "files" / "a.txt").write_text("alpha\n")
    (chart / "files" / "b.txt").write_text("line1\nline2\n")
    (chart / "templates" / "out.yaml").write_text(SCRATCH_TEMPLATE)
    (chart / "templates" / "fails.yaml").write_text('{{ if .Values.boom }}{{ fail "boom was set" }}{{ end }}{{ required "need.value is required" .Values.need }}\n')
    return chart


def test_the_renderer_implements_helms_functions_as_helm_defines_them(renderer, scratch_chart, tmp_path):
    overrides = values_file(tmp_path, {"dropme": None, "nested": {"change": 3}, "need": "x"})
    result = run_render(renderer, "--name", "rel", f"--values={overrides}", chart=scratch_chart)
    assert result.returncode == 0, result.stderr
    (doc,) = [d for d in yaml.safe_load_all(result.stdout) if d and "include" in d]
    assert doc["include"] == "scratch-rel" and doc["tpl"] == "hi rel"
    # Numbers from values are float64, as in Helm: 1000000 prints as 1e+06 unless converted.
    assert doc["int"] == 1000000 and "big: 1e+06" in result.stdout
    assert doc["missing"] == "" and doc["dropped"] is False and doc["kept"] == "1 3"
    assert doc["toYaml"] == {"change": 3, "keep": 1, "z": ["a", "b"]} and doc["toJson"] == {"change": 3, "keep": 1, "z": ["a", "b"]}
    assert doc["fromYaml"] == "2 true" and doc["fromJson"] == 5 and doc["lookup"] == 0
    assert doc["kube"] == "v1.37.0 37 true false"
    assert doc["file"] == "alpha" and doc["glob"] == "files/a.txt files/b.txt"
    assert doc["config"] == {"b.txt": "line1\nline2\n"} and doc["template"] == "scratch/templates/out.yaml"


def test_the_renderer_fails_like_helm_on_required_fail_and_kube_version(renderer, scratch_chart, tmp_path):
    missing = run_render(renderer, chart=scratch_chart)
    assert "Error: execution error at (scratch/templates/fails.yaml:1:" in missing.stderr and missing.stderr.rstrip().endswith("need.value is required")
    failed = run_render(renderer, f"--values={values_file(tmp_path, {'boom': True, 'need': 'x'})}", chart=scratch_chart)
    assert failed.returncode != 0 and failed.stderr.rstrip().endswith("boom was set")
    (scratch_chart / "templates" / "env.yaml").write_text('home: {{ env "HOME" }}\n')
    no_env = run_render(renderer, f"--values={values_file(tmp_path, {'need': 'x'})}", chart=scratch_chart)
    assert no_env.returncode != 0 and 'function "env" not defined' in no_env.stderr, "Helm removes sprig's env and expandenv"
    (scratch_chart / "templates" / "env.yaml").unlink()
    old = run_render(renderer, "--kube-version", "1.29.0", f"--values={values_file(tmp_path, {'need': 'x'})}", chart=scratch_chart)
    assert old.returncode != 0 and "incompatible with Kubernetes v1.29.0" in old.stderr
