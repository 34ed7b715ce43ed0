"""`limi-train`: --help, a one-shot CPU run with resume, and the Kubernetes Job (printed and submitted).

The one-shot run is a real process. Submission goes through the official `kubernetes` client to
a local HTTP server standing in for the API server (no API server can run here): the test checks
the requests the client really sends.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import subprocess
import sys
import threading

import kubernetes_validate
import pytest
import yaml

from limi_testing.synthetic_samples import run_tests_sample, tool_use_sample
from limi_trainer.cli import build_parser, main


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def test_help_explains_every_flag():
    text = build_parser().format_help()
    for flag in (
        "--dataset",
        "--base-model",
        "--output-dir",
        "--preset",
        "--set",
        "--learning-rate",
        "--epochs",
        "--zero-stage",
        "--offload-optimizer",
        "--kubernetes",
        "--submit",
        "--image",
        "--nodes",
        "--gpus-per-node",
        "--volume-claim",
    ):
        assert flag in text
    assert all(action.help for action in build_parser()._actions)
    code, out, _ = run_main(["--help"])
    assert code == 0 and "limi-train" in out


def test_one_shot_training_then_rerun_resumes_the_finished_run(tmp_path, tiny_model, write_jsonl):
    dataset = write_jsonl(tmp_path / "train.jsonl", [tool_use_sample(0), run_tests_sample(1)])
    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "limi_trainer.cli",
        "--dataset",
        str(dataset),
        "--base-model",
        str(tiny_model),
        "--output-dir",
        str(output),
        "--epochs",
        "2",
        "--global-batch-size",
        "2",
        "--set",
        "pack_tokens=2048",
        "--set",
        "max_sample_tokens=2048",
        "--checkpoint-every-steps",
        "1",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "limi-train: 2 steps, loss" in first.stdout and "summary" in first.stdout
    assert "training" in first.stderr  # the progress bar
    summary = json.loads((output / "summary.json").read_text())
    assert summary["plan"]["total_steps"] == 2 and (output / "loss_curve.png").is_file()
    assert all(sorted(step["samples"]) == [0, 1] for step in summary["steps"])

    again = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((output / "summary.json").read_text())["resumed_from_step"] == 2

    other = subprocess.run(
        [*command[:-2], "--checkpoint-every-steps", "2", "--epochs", "3"], capture_output=True, text=True, timeout=240
    )
    assert other.returncode == 2 and "holds another run" in other.stderr


def kubernetes_args(tmp_path, *extra: str) -> list[str]:
    return [
        "--dataset",
        "/data/datasets/limi.jsonl",
        "--base-model",
        "/data/models/GLM-4.5-Air",
        "--output-dir",
        "/data/runs/limi-air",
        "--preset",
        "limi",
        "--set",
        "warmup_ratio=0.05",
        "--kubernetes",
        "--image",
        "ghcr.io/example/limi-trainer:1.0",
        "--namespace",
        "training",
        *extra,
    ]


def test_kubernetes_job_is_printed_and_valid(tmp_path):
    code, out, err = run_main(kubernetes_args(tmp_path, "--gpus-per-node", "8"))
    assert code == 0, err
    (job,) = list(yaml.safe_load_all(out))
    kubernetes_validate.validate(job, "1.30.0", strict=True)
    assert (
        job["kind"] == "Job"
        and job["metadata"]["namespace"] == "training"
        and job["metadata"]["name"].startswith("limi-train-")
    )
    assert job["metadata"]["labels"]["limi.dev/run-id"] == "run-" + job["metadata"]["name"].removeprefix("limi-train-")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["torchrun", "--standalone", "--nproc-per-node=8", "-m", "limi_trainer.cli"]
    assert container["args"] == [
        "--dataset",
        "/data/datasets/limi.jsonl",
        "--base-model",
        "/data/models/GLM-4.5-Air",
        "--output-dir",
        "/data/runs/limi-air",
        "--preset",
        "limi",
        "--set",
        "warmup_ratio=0.05",
        "--no-progress",
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 3


def test_multi_node_job_is_indexed_with_a_rendezvous_service(tmp_path):
    code, out, err = run_main(
        kubernetes_args(tmp_path, "--nodes", "4", "--job-name", "limi-glm", "--node-selector", "gpu=h100")
    )
    assert code == 0, err
    service, job = list(yaml.safe_load_all(out))
    for obj in (service, job):
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] and pod["nodeSelector"] == {"gpu": "h100"}
    command = pod["containers"][0]["command"]
    assert (
        "--nnodes=4" in command
        and "--node-rank=$(NODE_RANK)" in command
        and "--master-addr=limi-glm-0.limi-glm-nodes" in command
    )
    assert any(env["name"] == "NODE_RANK" for env in pod["containers"][0]["env"])


def test_kubernetes_flags_are_checked(tmp_path):
    code, _out, err = run_main(
        [a for a in kubernetes_args(tmp_path) if a not in ("--image", "ghcr.io/example/limi-trainer:1.0")]
    )
    assert code == 2 and "image" in err
    code, _out, err = run_main(kubernetes_args(tmp_path, "--job-name", "Not_A_Name"))
    assert code == 2 and "job_name" in err
    code, _out, err = run_main(
        ["--dataset", "relative.jsonl", "--output-dir", "/data/x", "--kubernetes", "--image", "img"]
    )
    assert code == 2 and "absolute" in err
    code, _out, err = run_main(
        ["--dataset", "/d.jsonl", "--output-dir", "/x", "--set", "epochs=zero", "--kubernetes", "--image", "img"]
    )
    assert code == 2 and "hyperparameters.epochs" in err


class FakeApiServer(http.server.ThreadingHTTPServer):
    """Answers object creations like the Kubernetes API server does and records them."""

    def __init__(self) -> None:
        self.created: list[tuple[str, dict]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.created.append((self.path, body))
                reply = json.dumps({**body, "metadata": {**body["metadata"], "uid": "1234"}}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                return None

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def fake_api_server(tmp_path):
    server = FakeApiServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            }
        )
    )
    yield server, kubeconfig
    server.shutdown()


def test_submit_creates_the_service_and_job_through_the_api(tmp_path, fake_api_server):
    server, kubeconfig = fake_api_server
    args = kubernetes_args(tmp_path, "--nodes", "2", "--job-name", "limi-glm")
    code, printed, err = run_main(args)
    assert code == 0, err
    code, out, err = run_main([*args, "--submit", "--kubeconfig", str(kubeconfig)])
    assert code == 0, err
    assert "created Service/limi-glm-nodes" in out and "created Job/limi-glm" in out
    assert [path for path, _body in server.created] == [
        "/api/v1/namespaces/training/services",
        "/apis/batch/v1/namespaces/training/jobs",
    ]
    assert [body for _path, body in server.created] == list(yaml.safe_load_all(printed))
