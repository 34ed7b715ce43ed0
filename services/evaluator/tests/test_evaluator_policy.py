"""Policy bring-up without a model: checkpoint paths, endpoint probing, and the cluster-mode manifests."""

from __future__ import annotations

import kubernetes_validate
import pytest

from limi.checkpoint.v1 import checkpoint_pb2
from limi_core.errors import InvalidArgument, Unavailable
from limi_core.processes import free_port
from limi_evaluator.checkpoints import dataset_size
from limi_evaluator.kubernetes_policy import policy_manifests
from limi_evaluator.policy import CheckpointUnusable, checkpoint_path, probe_endpoint
from limi_evaluator.settings import EvaluatorSettings
from limi_testing.scripted_policy import Reply, ScriptedPolicyServer


def test_checkpoint_uris_must_name_a_local_model_directory(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(CheckpointUnusable, match="has no config.json"):
        checkpoint_path(str(tmp_path / "model"))
    (tmp_path / "model" / "config.json").write_text("{}")
    assert (
        checkpoint_path((tmp_path / "model").as_uri()) == tmp_path / "model" == checkpoint_path(str(tmp_path / "model"))
    )
    with pytest.raises(CheckpointUnusable, match="does not exist"):
        checkpoint_path(str(tmp_path / "missing"))
    with pytest.raises(CheckpointUnusable, match="s3://"):
        checkpoint_path("s3://bucket/run/step-9")
    with pytest.raises(InvalidArgument):
        checkpoint_path("")


async def test_endpoints_are_probed_before_use():
    with ScriptedPolicyServer(lambda body: Reply(content="hi"), model="served-name") as server:
        assert await probe_endpoint(server.endpoint) == ["served-name"]
    with pytest.raises(Unavailable, match="is unreachable"):
        await probe_endpoint(f"http://127.0.0.1:{free_port()}/v1", attempts=1)
    with pytest.raises(InvalidArgument, match="http"):
        await probe_endpoint("ftp://example/v1")


def test_dataset_size_comes_from_lineage_or_hyperparameters():
    assert dataset_size(checkpoint_pb2.Checkpoint(trajectory_ids=["a", "b", "c"])) == 3
    assert dataset_size(checkpoint_pb2.Checkpoint(hyperparameters={"train_samples": "156"})) == 156
    assert dataset_size(checkpoint_pb2.Checkpoint(metrics={"samples": 78.0})) == 78
    assert dataset_size(checkpoint_pb2.Checkpoint()) is None


def test_the_cluster_policy_job_and_service_are_valid_kubernetes_objects():
    settings = EvaluatorSettings(policy_mode="kubernetes", kubernetes_namespace="limi", kubernetes_gpus=2)
    job, service = policy_manifests("file:///checkpoints/run-1/step-9", settings)
    for manifest in (job, service):
        kubernetes_validate.validate(manifest, desired_version=kubernetes_validate.latest_version(), strict=True)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert (
        container["args"][:2] == ["--model", "/checkpoints/run-1/step-9"]
        and "--enable-auto-tool-choice" in container["args"]
    )
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2" and pod["automountServiceAccountToken"] is False
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "limi-checkpoints", "readOnly": True}
    assert service["spec"]["selector"] == {"limi/policy": job["metadata"]["name"]}
    with pytest.raises(InvalidArgument, match="under /checkpoints/"):
        policy_manifests("/home/me/model", settings)


def test_vllm_processes_left_by_a_killed_evaluator_are_reaped(tmp_path):
    """An evaluator killed with SIGKILL takes its vLLM server along (parent-death signal) but not the engine
    process the server forked; the next evaluator kills what is left of the recorded process groups."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from limi_evaluator.vllm_server import reap_orphaned_groups

    groups = tmp_path / "vllm-groups"
    groups.mkdir()
    # A stand-in "vllm" server (its command line says vllm) that forks an engine into its own group, then dies.
    script = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(120)', 'vllm-engine'])\n"
        "time.sleep(120)\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", script, "vllm.entrypoints.openai.api_server"], start_new_session=True
    )
    (groups / str(server.pid)).write_text("model")
    time.sleep(1.0)
    engine = [
        int(p.parent.name)
        for p in __import__("pathlib").Path("/proc").glob("[0-9]*/cmdline")
        if b"vllm-engine" in p.read_bytes() and int(p.parent.name) != server.pid
    ]
    assert len(engine) == 1
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    assert os.path.exists(f"/proc/{engine[0]}")  # orphaned, still alive
    assert reap_orphaned_groups(groups) == engine
    deadline = time.monotonic() + 10
    while (
        os.path.exists(f"/proc/{engine[0]}") and open(f"/proc/{engine[0]}/stat").read().split(")")[1].split()[0] != "Z"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not list(groups.iterdir())
