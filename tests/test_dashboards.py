"""The Grafana dashboards in deploy/helm/limi/dashboards: every PromQL expression returns data.

The embedded stack (`limi up`'s five services and NATS) runs on free ports with a scripted policy
behind the OpenAI API; a little real work goes through it (a query imported into the curator, an
episode that runs a shell command in a sandbox and publishes its trajectory, a session refused by
the sandbox's quota, a one-task evaluation, a tiny training run) so that the metrics the panels
use have samples. Debian's Prometheus scrapes the five metrics endpoints every second; then every
`expr` found in the dashboard JSON is run through Prometheus's HTTP API and must return at least
one series. The dashboards' structure (unique uids, a datasource variable, ids, grid positions) is
checked as well.
"""

from __future__ import annotations

import json
import math
import pathlib
import random
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import grpc
import pytest

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi.evaluator.v1 import evaluator_pb2, evaluator_pb2_grpc
from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from limi_cli.stack import EmbeddedStack
from limi_core.health_check import check_health
from limi_core.processes import SUPERVISED_CHILD, free_port, supervised
from limi_core.settings import DEFAULT_PORTS
from limi_testing.scripted_policy import Reply, ScriptedPolicyServer
from limi_testing.synthetic_samples import tool_use_sample

DASHBOARDS = pathlib.Path(__file__).resolve().parents[1] / "deploy" / "helm" / "limi" / "dashboards"
PROMETHEUS = "/usr/bin/prometheus"
NATS_PORT = 4233


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every target of every panel."""
    return [
        (name, panel["title"], target["expr"])
        for name, dashboard in dashboards().items()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def test_dashboards_are_well_formed_for_grafana():
    loaded = dashboards()
    assert {"limi-overview.json", "limi-sandbox.json", "limi-trainer.json", "limi-evaluator.json"} <= set(loaded)
    assert len({d["uid"] for d in loaded.values()}) == len(loaded)
    for name, dashboard in loaded.items():
        assert dashboard["title"].startswith("limi") and "limi" in dashboard["tags"], name
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus", (
            name
        )
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in panels(dashboard):
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"][
                "w"
            ] <= 24, panel["title"]
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
                assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
                assert panel.get("description"), f"{name}: panel {panel['title']!r} says nothing about what it shows"


def ports_free(offset: int) -> bool:
    ports = [NATS_PORT + offset] + [p + offset for ports in DEFAULT_PORTS.values() for p in ports]
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def policy_script(body: dict) -> Reply:
    """One shell command, then an answer: enough for an episode, a sandbox exec and a graded task."""
    if not any(m["role"] == "tool" for m in body["messages"]):
        return Reply(
            content="Let me look around.", tool_calls=(("shell", json.dumps({"command": "echo limi > seen.txt; ls"})),)
        )
    return Reply(content="Done.")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    policy = ScriptedPolicyServer(policy_script).start()
    offset = next(o for o in (random.randrange(2000, 9000) for _ in range(50)) if ports_free(o))
    address = {name: f"127.0.0.1:{ports.grpc + offset}" for name, ports in DEFAULT_PORTS.items()}
    stack = EmbeddedStack(
        tmp_path_factory.mktemp("stack"),
        port_offset=offset,
        nats_port=NATS_PORT,
        grace_seconds=3,
        extra_env={
            "LIMI_ROLLOUT_POLICY_ENDPOINT": policy.endpoint,
            "LIMI_ROLLOUT_SANDBOX_ADDRESS": address["sandbox"],
            "LIMI_EVALUATOR_SANDBOX_ADDRESS": address["sandbox"],
            "LIMI_EVALUATOR_ROLLOUT_ADDRESS": address["rollout"],
            "LIMI_EVALUATOR_CONSUME_CHECKPOINTS": "false",
            "LIMI_SANDBOX_MAX_SESSIONS": "2",
            "LIMI_SANDBOX_POOL_SIZE": "1",
        },
    )
    stack.start(timeout=120)
    yield stack, policy
    stack.stop()
    policy.stop()


def generate_activity(stack: EmbeddedStack, policy: ScriptedPolicyServer) -> None:
    """Two rounds of the same work, a few scrapes apart (a counter's first increment is invisible
    to rate()), beside one tiny training run on CPU (one optimizer step; about 45 s, mostly start-up)."""
    channel = {name: grpc.insecure_channel(endpoint.grpc_address) for name, endpoint in stack.endpoints.items()}
    trainer = trainer_pb2_grpc.TrainerServiceStub(channel["trainer"])
    dataset = stack.data_dir / "curator" / "datasets" / "dashboards-dataset.jsonl"  # where StartRun may read datasets
    dataset.parent.mkdir(parents=True, exist_ok=True)
    dataset.write_text("".join(json.dumps(tool_use_sample(n)) + "\n" for n in range(4)))
    run = trainer.StartRun(
        trainer_pb2.StartRunRequest(
            dataset_uri=dataset.as_uri(), base_model="limi-tiny", preset="tiny-cpu", hyperparameters={"epochs": "1"}
        ),
        timeout=60,
    )
    curator = curator_pb2_grpc.CuratorServiceStub(channel["curator"])
    rows = "".join(
        json.dumps({"text": text}) + "\n"
        for text in (
            "Add a --verbose flag to the CLI and test it.",
            "Fix the off-by-one error in the pager.",
            "Document the config file format.",
        )
    )
    imported = curator.ImportQueries(
        curator_pb2.ImportQueriesRequest(
            format=curator_pb2.IMPORT_FORMAT_JSONL, content=rows.encode(), origin="dashboards.jsonl"
        ),
        timeout=30,
    )
    assert imported.imported == 3
    rollout = rollout_pb2_grpc.RolloutServiceStub(channel["rollout"])
    sandbox = sandbox_pb2_grpc.SandboxServiceStub(channel["sandbox"])
    evaluator = evaluator_pb2_grpc.EvaluatorServiceStub(channel["evaluator"])
    for round_ in (0, 1):
        # The pipeline's own path: a query set emitted to rollout, an episode, a trajectory stored by the curator.
        query_set = curator.PublishQuerySet(
            curator_pb2.PublishQuerySetRequest(name=f"dashboards-{round_}", query_ids=[imported.query_ids[round_]]),
            timeout=30,
        )
        curator.EmitQuerySet(
            curator_pb2.EmitQuerySetRequest(query_set_id=query_set.id, episodes_per_query=1), timeout=30
        )
        with pytest.raises(grpc.RpcError):  # NOT_FOUND, for the error panels
            curator.GetQuery(curator_pb2.GetQueryRequest(id="no-such-query"), timeout=10)
        query = query_pb2.Query(id=f"dashboards-direct-{round_}", text="Write limi into seen.txt.")
        assert rollout.RunEpisode(rollout_pb2.RunEpisodeRequest(query=query, publish=True), timeout=120).steps
        opened = []
        with pytest.raises(grpc.RpcError) as refused:  # LIMI_SANDBOX_MAX_SESSIONS=2: the third open session is refused
            for _ in range(3):
                opened.append(sandbox.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=60))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
        for session in opened:
            sandbox.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session.id), timeout=30)
        evaluator.Evaluate(
            evaluator_pb2.EvaluateRequest(
                checkpoint_id=f"dashboards-{round_}",
                endpoint=policy.endpoint,
                model="scripted-policy",
                benchmark="limi-basics",
                limit=1,
                max_rounds=1,
            ),
            timeout=180,
        )
        wait_for_completed_queries(curator, round_ + 1)
        time.sleep(2.5)
    deadline = time.monotonic() + 240
    while run.state not in (
        trainer_pb2.RUN_STATE_SUCCEEDED,
        trainer_pb2.RUN_STATE_FAILED,
        trainer_pb2.RUN_STATE_CANCELLED,
    ):
        assert time.monotonic() < deadline, f"the training run is still {trainer_pb2.RunState.Name(run.state)}"
        time.sleep(1)
        run = trainer.GetRun(trainer_pb2.GetRunRequest(id=run.id), timeout=10)
    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error


def wait_for_completed_queries(curator: curator_pb2_grpc.CuratorServiceStub, count: int, timeout: float = 60) -> None:
    """Until `count` emitted queries are COMPLETED: rollout ran them and the curator stored their trajectories."""
    deadline = time.monotonic() + timeout
    while True:
        listed = curator.ListQueries(
            curator_pb2.ListQueriesRequest(status=query_pb2.QUERY_STATUS_COMPLETED, page_size=100), timeout=10
        )
        if len(listed.queries) >= count:
            return
        assert time.monotonic() < deadline, f"{len(listed.queries)} of {count} emitted queries completed"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    if shutil.which(PROMETHEUS) is None and not pathlib.Path(PROMETHEUS).exists():
        pytest.fail("Debian's prometheus is missing: run scripts/setup (it installs the prometheus package)")
    running, policy = stack
    folder = tmp_path_factory.mktemp("prometheus")
    targets = [endpoint.metrics_address for endpoint in running.endpoints.values()]
    (folder / "prometheus.yml").write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
                # honor_labels as in the chart's ServiceMonitor: limi's own "service" label is kept.
                "scrape_configs": [
                    {"job_name": "limi", "honor_labels": True, "static_configs": [{"targets": targets}]}
                ],
            }
        )
    )
    port = free_port()
    with open(folder / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            supervised(
                [
                    PROMETHEUS,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **SUPERVISED_CHILD,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # Work done before the first scrape would show as a flat counter: wait until every target is up.
        deadline = time.monotonic() + 60
        while not (ready(url) and sum(1 for r in query(url, "up") if r["value"][1] == "1") == len(targets)):
            assert process.poll() is None and time.monotonic() < deadline, (folder / "prometheus.log").read_text()
            time.sleep(0.5)
        generate_activity(running, policy)
        yield url, running
    finally:
        process.terminate()
        process.wait(15)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def query(url: str, expr: str) -> list:
    with urllib.request.urlopen(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=10
    ) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def has_data(url: str, expr: str) -> bool:
    """At least one series with a number (a quantile over no observations is NaN: no data)."""
    return any(math.isfinite(float(series["value"][1])) for series in query(url, expr))


def test_every_dashboard_expression_returns_data_from_the_running_services(prometheus):
    url, running = prometheus
    pending = expressions()
    assert len(pending) >= 20
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        pending = [(name, title, expr) for name, title, expr in pending if not has_data(url, expr)]
        if pending:
            # What a cluster's probes do all the time: without it a latency rate over calls made
            # before the first scrape is flat, and its quantile has no value.
            for endpoint in running.endpoints.values():
                check_health(endpoint.grpc_address)
            time.sleep(1)
    assert pending == [], "expressions without data:\n" + "\n".join(f"{n} / {t}: {e}" for n, t, e in pending)
