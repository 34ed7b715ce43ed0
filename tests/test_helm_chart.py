"""The Helm chart deploy/helm/limi, rendered and linted by the real Helm, without a Kubernetes API server.

`helm lint --strict` and `helm template` (Helm v4, installed by scripts/setup; see tests/conftest.py)
run on the chart with the default values and with values-production-gpu.yaml. Every rendered
object, the `helm test` hooks included, is validated with kubernetes-validate --strict for
Kubernetes 1.37; then the tests check what the schemas cannot: restricted security contexts,
native gRPC probes, resources, the sandbox's RBAC scope and NetworkPolicy, that selectors and
addresses point at objects the chart creates, that the `helm test` pod asks every enabled
service, that required values fail with a clear message, and that Helm itself rejects bad
values with values.schema.json. What a user then runs against a release (`helm test`,
`kubectl create job --from=cronjob/...`) is exercised in test_helm_release.py.
"""

from __future__ import annotations

import json
import os
import pathlib
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


def values_file(tmp_path: pathlib.Path, values: dict) -> pathlib.Path:
    path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="session", params=["default", "production"])
def profile(request, helm) -> tuple[str, list[dict]]:
    return request.param, helm.render(*([PRODUCTION] if request.param == "production" else []))


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
        elif o["kind"] == "Pod":
            pods[f"Pod/{o['metadata']['name']}"] = o
    return pods


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- Kubernetes schemas -------------------------------------------------------------------------


def test_helm_lint_strict_passes(helm):
    for values in ((), (f"--values={PRODUCTION}",)):
        result = helm.run("lint", "--strict", "--kube-version", helm.kube_version, str(CHART), *values)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_every_object_is_valid_for_kubernetes_in_strict_mode(profile, helm):
    name, objects = profile
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "StatefulSet",
        "CronJob",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Namespace",
        "LimitRange",
        "ResourceQuota",
        "ConfigMap",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "Pod",
    } <= kinds
    for o in objects:
        if o["kind"] == "ServiceMonitor":  # a CRD: checked field by field in test_service_monitor
            continue
        try:
            kubernetes_validate.validate(o, helm.kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {o['kind']}/{o['metadata']['name']} at {'.'.join(map(str, exc.path))}: {exc.message}")


def test_each_template_file_renders_at_most_one_object(helm):
    result = helm.template(PRODUCTION)
    assert result.returncode == 0, result.stderr
    sources = [line for line in result.stdout.splitlines() if line.startswith("# Source: ")]
    assert len(sources) == len(set(sources)) > 30


def test_the_jobs_run_the_one_shot_clis_with_arguments_they_accept(profile):
    from importlib.metadata import entry_points

    import limi_evaluator.cli
    import limi_trainer.cli

    name, objects = profile
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["limi-train"].startswith("limi_trainer.cli:") and scripts["limi-evaluate"].startswith(
        "limi_evaluator.cli:"
    )
    train = one(objects, "CronJob", "limi-train")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    gpus = train["resources"]["limits"]["nvidia.com/gpu"]
    if gpus > 1:
        assert train["command"] == ["torchrun", "--standalone", f"--nproc-per-node={gpus}", "-m", "limi_trainer.cli"]
        usage = subprocess.run(
            [sys.executable, "-m", "limi_trainer.cli", "--help"], capture_output=True, text=True, timeout=60
        )
        assert usage.returncode == 0 and usage.stdout.startswith("usage: limi-train")
    else:
        assert train["command"] == ["limi-train"]
    args = [a.replace("$(JOB_NAME)", "run-1") for a in train["args"]] + ["--dataset", "/data/curator/datasets/d.jsonl"]
    parsed = limi_trainer.cli.build_parser().parse_args(args)
    assert str(parsed.output_dir) == "/data/trainer/jobs/run-1" and parsed.preset == "limi"
    evaluate = one(objects, "CronJob", "limi-evaluate")["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]
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
    gpus = {
        "Deployment/limi-vllm": (1, 4),
        "CronJob/limi-train": (1, 8),
        "CronJob/limi-evaluate": (1, 4),
        "Deployment/limi-trainer": (None, 8),
    }
    for where, template in pod_templates(objects).items():
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory", "ephemeral-storage"} <= set(resources[kind]), f"{where}: {kind}"
            if where in gpus:
                expected = gpus[where][name == "production"]
                assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == expected, (
                    where
                )
            else:
                assert "nvidia.com/gpu" not in resources["limits"], where


def test_every_pods_scratch_volumes_fit_in_its_limits(profile):
    """emptyDir on disk counts against the pod's ephemeral storage, in memory against its memory: the kubelet evicts otherwise."""
    _name, objects = profile
    for where, template in pod_templates(objects).items():
        pod = template["spec"]
        limits = [c["resources"]["limits"] for c in pod["containers"]]
        disk = sum(
            quantity(v["emptyDir"]["sizeLimit"])
            for v in pod.get("volumes", [])
            if v.get("emptyDir", {}).get("medium") is None and "emptyDir" in v
        )
        memory = sum(
            quantity(v["emptyDir"]["sizeLimit"])
            for v in pod.get("volumes", [])
            if v.get("emptyDir", {}).get("medium") == "Memory"
        )
        assert disk <= sum(quantity(limit["ephemeral-storage"]) for limit in limits), (
            f"{where}: emptyDir volumes exceed its ephemeral-storage limit"
        )
        assert memory < sum(quantity(limit["memory"]) for limit in limits), (
            f"{where}: in-memory volumes exceed its memory limit"
        )


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
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": ports["grpc"]}, f"{service} {probe}"
        # Liveness is its own health entry: a NATS outage makes a pod unready, never restarts it.
        assert container["livenessProbe"]["grpc"] == {"port": ports["grpc"], "service": "liveness"}, service
        assert pod["terminationGracePeriodSeconds"] > float(env["LIMI_SHUTDOWN_GRACE_SECONDS"])
        assert container["command"] == ["python", "-m", f"limi_{service}"]
        # Helm reads numbers as float64: 16777216 must not come out as 1.6777216e+07.
        assert env["LIMI_MAX_MESSAGE_BYTES"] == "16777216"


def test_every_address_and_selector_points_at_an_object_of_the_chart(profile):
    _name, objects = profile
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    pods = pod_templates(objects)
    for service in services.values():
        assert any(matches(service["spec"]["selector"], t["metadata"]["labels"]) for t in pods.values()), service[
            "metadata"
        ]["name"]
    for pdb in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        assert any(matches(pdb["spec"]["selector"]["matchLabels"], t["metadata"]["labels"]) for t in pods.values())
    for where, template in pods.items():
        for container in template["spec"]["containers"]:
            for variable, value in env_of(container).items():
                if value and (
                    variable.endswith(("_SANDBOX_ADDRESS", "_ROLLOUT_ADDRESS"))
                    or variable in ("LIMI_NATS_URL", "LIMI_ROLLOUT_POLICY_ENDPOINT")
                ):
                    host, port = value.split("://")[-1].split("/")[0].rsplit(":", 1)
                    assert host in services, f"{where} {variable}={value}: no such Service"
                    assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]], (
                        f"{where} {variable}={value}"
                    )
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
    assert rules == {
        (("",), ("pods",)): {"create", "get", "list", "watch", "delete"},
        (("",), ("pods/exec",)): {"create", "get"},
        (("",), ("pods/log",)): {"get"},
    }
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
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


def test_session_pods_of_the_sandbox_service_fit_the_namespace_limits_and_quota(profile, helm):
    """The pod the sandbox service creates for a session (its own manifest, default limits) against the chart."""
    from limi_sandbox.backends.kubernetes import agent_sources, pod_manifest
    from limi_sandbox.limits import default_limits
    from limi_sandbox.settings import SandboxSettings

    _name, objects = profile
    env = env_of(one(objects, "Deployment", "limi-sandbox")["spec"]["template"]["spec"]["containers"][0])
    settings = SandboxSettings(
        max_sessions=int(env["LIMI_SANDBOX_MAX_SESSIONS"]),
        kubernetes_pool_size=int(env["LIMI_SANDBOX_KUBERNETES_POOL_SIZE"]),
    )
    pod = pod_manifest(
        "sbx-1",
        env["LIMI_SANDBOX_KUBERNETES_NAMESPACE"],
        env["LIMI_SANDBOX_KUBERNETES_IMAGE"],
        default_limits(settings),
        tmp_bytes=settings.tmp_bytes,
        runtime_class=env["LIMI_SANDBOX_KUBERNETES_RUNTIME_CLASS"],
        cpu_request="250m",
        cpu_limit="2",
        lifetime_seconds=3600,
        agent_files=agent_sources(),
    )
    kubernetes_validate.validate(pod, helm.kube_version, strict=True)
    assert (
        pod["metadata"]["namespace"] == one(objects, "NetworkPolicy", "limi-sandbox-sessions")["metadata"]["namespace"]
    )
    resources = pod["spec"]["containers"][0]["resources"]
    maximum = one(objects, "LimitRange", "limi-sandbox-sessions")["spec"]["limits"][0]["max"]
    for resource, limit in resources["limits"].items():
        assert quantity(limit) <= quantity(maximum[resource]), (
            f"a default session pod's {resource} limit exceeds the LimitRange"
        )
    hard = one(objects, "ResourceQuota", "limi-sandbox-sessions")["spec"]["hard"]
    pods = settings.max_sessions + settings.kubernetes_pool_size
    assert pods <= quantity(hard["pods"])
    for kind in ("requests", "limits"):
        for resource, amount in resources[kind].items():
            assert pods * quantity(amount) <= quantity(hard[f"{kind}.{resource}"]), (
                f"{pods} session pods exceed the quota's {kind}.{resource}"
            )


def test_release_name_and_namespace_flow_into_names_policies_and_bindings(helm):
    objects = helm.render(name="prod", namespace="ml")
    assert one(objects, "CronJob", "prod-train") and one(objects, "CronJob", "prod-evaluate")
    policy = one(objects, "NetworkPolicy", "prod-sandbox-sessions")
    assert policy["metadata"]["namespace"] == "prod-sandbox"
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ml"
    }
    assert one(objects, "RoleBinding", "prod-sandbox-sessions")["subjects"][0]["namespace"] == "ml"
    assert {o["metadata"]["namespace"] for o in objects if o["kind"] not in ("Namespace",)} == {"ml", "prod-sandbox"}


# --- NATS, vLLM, monitoring -----------------------------------------------------------------------


def test_nats_keeps_jetstream_on_a_volume_and_its_config_parses(profile, tmp_path):
    name, objects = profile
    statefulset = one(objects, "StatefulSet", "limi-nats")
    replicas = 3 if name == "production" else 1
    assert statefulset["spec"]["replicas"] == replicas
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    mounts = {
        m["name"]: m["mountPath"] for m in statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    conf = one(objects, "ConfigMap", "limi-nats")["data"]["nats.conf"]
    assert f"store_dir: {mounts[claim['metadata']['name']]}/" in conf and "sync_interval: always" in conf
    assert conf.count("nats://limi-nats-") == (replicas if replicas > 1 else 0)
    # Debian's nats-server 2.9 predates sync_interval (2.10); everything else must parse.
    local = conf.replace("/data/jetstream", str(tmp_path / "js")).replace("/var/run/nats", str(tmp_path))
    local = "\n".join(line for line in local.splitlines() if "sync_interval" not in line)
    (tmp_path / "nats.conf").write_text(local)
    check = subprocess.run(
        [nats_server_binary(), "-c", str(tmp_path / "nats.conf"), "-t"],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVER_NAME": "limi-nats-0"},
        timeout=30,
    )
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


def test_service_monitor_scrapes_named_ports_of_the_chart_services(helm):
    objects = helm.render(PRODUCTION)
    monitor = one(objects, "ServiceMonitor", "limi")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selected = [
        o
        for o in objects
        if o["kind"] == "Service" and matches(monitor["spec"]["selector"]["matchLabels"], o["metadata"]["labels"])
    ]
    port_names = {p["name"] for s in selected for p in s["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) == {"port", "path", "interval", "honorLabels"}
        assert endpoint["port"] in port_names and endpoint["honorLabels"] is True
    assert not [o for o in helm.render() if o["kind"] == "ServiceMonitor"]


def test_dashboards_configmap_carries_every_dashboard_for_the_grafana_sidecar(profile):
    _name, objects = profile
    configmap = one(objects, "ConfigMap", "limi-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert sorted(configmap["data"]) == [f.name for f in files]
    for file in files:
        assert json.loads(configmap["data"][file.name]) == json.loads(file.read_text())


# --- the `helm test` hooks ------------------------------------------------------------------------


def test_the_helm_test_pod_asks_every_enabled_service_and_nats_and_carries_its_script(profile):
    name, objects = profile
    hooks = {
        f"{o['kind']}/{o['metadata']['name']}": o
        for o in objects
        if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    }
    assert sorted(hooks) == ["ConfigMap/limi-check-release", "Pod/limi-check-release"]
    configmap, pod = hooks["ConfigMap/limi-check-release"], hooks["Pod/limi-check-release"]
    assert configmap["data"] == {"check_release.py": (CHART / "files" / "check_release.py").read_text()}
    weights = [int(o["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) for o in (configmap, pod)]
    assert weights[0] < weights[1], "helm test must create the script before the pod that runs it"
    # The restricted security context, resources and /tmp are checked with every other pod above.
    assert "Pod/limi-check-release" in pod_templates(objects)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["restartPolicy"] == "Never"
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    folder, _, script = container["command"][1].rpartition("/")
    assert container["command"][0] == "python" and script in configmap["data"]
    assert volumes[mounts[folder]]["configMap"]["name"] == configmap["metadata"]["name"]
    curator = one(objects, "Deployment", "limi-curator")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == curator["image"], "the test pod runs in a limi image (it imports limi_core)"
    asked = dict(a.removeprefix("--service=").split("=", 1) for a in container["args"] if a.startswith("--service="))
    services = [o for o in objects if o["kind"] == "Service"]
    grpc = {
        s["metadata"]["name"].removeprefix("limi-"): f"{s['metadata']['name']}:{p['port']}"
        for s in services
        for p in s["spec"]["ports"]
        if p["name"] == "grpc"
    }
    assert asked == grpc
    assert set(asked) == {"curator", "sandbox", "rollout", "evaluator"} | (
        {"trainer"} if name == "production" else set()
    )
    assert "--nats-url=nats://limi-nats:4222" in container["args"]
    assert 4222 in [p["port"] for p in one(objects, "Service", "limi-nats")["spec"]["ports"]]


def test_the_helm_test_hooks_are_left_out_with_skip_tests_or_tests_disabled(helm, tmp_path):
    skipped = helm.template(flags=("--skip-tests",))
    assert skipped.returncode == 0, skipped.stderr
    assert "check-release" not in skipped.stdout
    disabled = helm.render(values_file(tmp_path, {"tests": {"enabled": False}}))
    assert disabled and not [o for o in disabled if "check-release" in o["metadata"]["name"]]


# --- values: required, schema, docs ---------------------------------------------------------------

SCHEMA_ERROR = "values don't meet the specifications of the schema(s)"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"storage": {"create": False}}, "storage.existingClaim is required when storage.create is false"),
        (
            {"vllm": {"model": {"source": "volume"}}},
            "vllm.model.existingClaim is required when vllm.model.source is volume",
        ),
        ({"vllm": {"model": {"name": ""}}}, "vllm.model.name is required"),
        ({"trainer": {"enabled": True, "baseModel": ""}}, "trainer.baseModel is required when trainer.enabled is true"),
    ],
)
def test_a_missing_required_value_stops_rendering_with_a_clear_message(helm, tmp_path, values, message):
    result = helm.template(values_file(tmp_path, values))
    assert result.returncode != 0 and not result.stdout
    assert message in result.stderr and "execution error at (limi/templates/" in result.stderr


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"vllm": {"enabled": False}}, "/policy/endpoint", "policy.endpoint is required when vllm.enabled is false"),
        ({"nats": {"enabled": False}}, "/nats/url", "nats.url is required when nats.enabled is false"),
    ],
)
def test_a_value_another_one_requires_is_enforced_by_the_schema_and_by_the_templates(
    helm, tmp_path, values, path, message
):
    """values.schema.json stops these first; with --skip-schema-validation the templates' `required` still does."""
    result = helm.template(values_file(tmp_path, values))
    assert result.returncode != 0 and not result.stdout
    assert SCHEMA_ERROR in result.stderr and f"at '{path}'" in result.stderr, result.stderr
    unchecked = helm.template(values_file(tmp_path, values), flags=("--skip-schema-validation",))
    assert unchecked.returncode != 0 and not unchecked.stdout
    assert message in unchecked.stderr and "execution error at (limi/templates/" in unchecked.stderr


def test_required_values_once_set_are_used(helm, tmp_path):
    values = {
        "vllm": {"enabled": False},
        "policy": {"endpoint": "https://llm.example.com/v1", "model": "glm"},
        "nats": {"enabled": False, "url": "nats://nats.infra:4222"},
        "storage": {"create": False, "existingClaim": "shared"},
    }
    objects = helm.render(values_file(tmp_path, values))
    env = env_of(one(objects, "Deployment", "limi-rollout")["spec"]["template"]["spec"]["containers"][0])
    assert (env["LIMI_ROLLOUT_POLICY_ENDPOINT"], env["LIMI_ROLLOUT_POLICY_MODEL"], env["LIMI_NATS_URL"]) == (
        "https://llm.example.com/v1",
        "glm",
        "nats://nats.infra:4222",
    )
    assert not [o for o in objects if o["metadata"]["name"] in ("limi-vllm", "limi-nats", "limi-data")]
    curator_volumes = one(objects, "Deployment", "limi-curator")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}} in curator_volumes
    check = one(objects, "Pod", "limi-check-release")["spec"]["containers"][0]
    assert "--nats-url=nats://nats.infra:4222" in check["args"]


def test_the_values_schema_is_json_schema_draft_7():
    """Helm validates values against it (below and in every render); here the schema itself is checked."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) == set(defaults), (
        "values.yaml and values.schema.json name different top-level keys"
    )


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"curator": {"replicas": "two"}}, "/curator/replicas"),
        ({"common": {"logLevel": "TRACE"}}, "/common/logLevel"),
        ({"images": {"pullPolicy": "Sometimes"}}, "/images/pullPolicy"),
        ({"nats": {"replicas": 2}}, "/nats/replicas"),
        ({"nats": {"jetstream": {"syncInterval": "often"}}}, "/nats/jetstream/syncInterval"),
        ({"vllm": {"model": {"source": "s3"}}}, "/vllm/model/source"),
        ({"vllm": {"gpus": 0}}, "/vllm/gpus"),
        (
            {"rollout": {"resources": {"limits": {"cpu": "lots", "memory": "1Gi", "ephemeral-storage": "1Gi"}}}},
            "/rollout/resources/limits/cpu",
        ),
        ({"sandbox": {"sessions": {"namespace": "Not_A_Namespace"}}}, "/sandbox/sessions/namespace"),
        ({"sandbox": {"env": {"LIMI_SANDBOX_POOL_SIZE": {"nested": 1}}}}, "/sandbox/env/LIMI_SANDBOX_POOL_SIZE"),
        ({"train": {"schedule": "every day"}}, "/train/schedule"),
        ({"evaluator": {"replicaCount": 2}}, "/evaluator"),
        ({"vllm": {"enabled": False}}, "/policy/endpoint"),
        ({"tests": {"timeoutSeconds": 0}}, "/tests/timeoutSeconds"),
    ],
)
def test_helm_rejects_bad_values_with_the_schema(helm, tmp_path, bad, path):
    result = helm.template(values_file(tmp_path, bad))
    assert result.returncode != 0 and not result.stdout
    assert SCHEMA_ERROR in result.stderr and f"at '{path}'" in result.stderr, result.stderr


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
