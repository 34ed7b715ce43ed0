"""No request reaches outside the folders a service is configured to read (issue 14).

Every path-bearing request field, against the real service process: the trainer's dataset_uri
(the curator's datasets folder) and base_model (the model roots), the evaluator's checkpoint_uri
(the trainer's folder and limi's model cache) and a benchmark named by path (the suites folder),
the curator's tokenizer (the tokenizer roots), the rollout's workspace files and the sandbox's
initial files (the workspace). Each field gets what an attacker would send (a path outside, `..`
that climbs out, a symlink planted inside that points out, a percent-encoded `..`, a relative
path) and a path inside that is allowed, so that the refusals are the roots' doing. The
sandbox's file tools (ReadFile, WriteFile ... inside a live session) are covered by the
sandbox's own adversarial tests; tests/test_rpc_fuzz.py sends `../../etc/passwd` to every field.
"""

from __future__ import annotations

import pathlib

import grpc
import pytest

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi.evaluator.v1 import evaluator_pb2, evaluator_pb2_grpc
from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from limi_core.health_check import wait_for_health

DENIED, INVALID = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT


def start(service_process, name: str, **env):
    service = service_process(name, env=env)
    wait_for_health(service.grpc_address, "SERVING", timeout=90, process=service.process)
    return service, grpc.insecure_channel(service.grpc_address)


def answer(call, request) -> tuple[grpc.StatusCode, str]:
    try:
        call(request, timeout=30)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def expect(call, request, code: grpc.StatusCode, starts: str, *words: str) -> None:
    got, details = answer(call, request)
    assert got == code and details.startswith(starts), (got, details)
    assert all(word in details for word in words), details


@pytest.fixture
def outside(tmp_path) -> pathlib.Path:
    """A folder beside the services' data, holding what a request must not reach."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "suite.toml").write_text('name = "outside"\n')
    return folder


def test_start_run_reads_datasets_only_under_the_curators_datasets_folder(service_process, tmp_path, outside):
    datasets = tmp_path / "curator" / "datasets"
    datasets.mkdir(parents=True)
    (datasets / "planted-link.jsonl").symlink_to(outside / "train.jsonl")
    (datasets / "planted-dir").symlink_to(outside)
    _, channel = start(service_process, "trainer")
    start_run = trainer_pb2_grpc.TrainerServiceStub(channel).StartRun

    def run(**fields) -> trainer_pb2.StartRunRequest:
        return trainer_pb2.StartRunRequest(**fields)

    for refused in (
        str(outside / "train.jsonl"),
        (outside / "train.jsonl").as_uri(),
        "/etc/passwd",
        "file:///etc/passwd",
        f"{datasets}/../../outside/train.jsonl",
        f"file://{datasets}/%2e%2e/%2e%2e/outside/train.jsonl",
        str(datasets / "planted-link.jsonl"),
        str(datasets / "planted-dir" / "train.jsonl"),
    ):
        expect(
            start_run, run(dataset_uri=refused), DENIED, "dataset_uri: ", "LIMI_TRAINER_DATASET_ROOTS", str(datasets)
        )
    expect(start_run, run(dataset_uri="../../etc/passwd"), INVALID, "dataset_uri: must be an absolute path")
    expect(
        start_run,
        run(dataset_uri="s3://bucket/train.jsonl"),
        INVALID,
        "dataset_uri: must be a local path or a file:// URI",
    )
    # Inside the root the request gets as far as the file itself.
    expect(
        start_run,
        run(dataset_uri=(datasets / "missing.jsonl").as_uri()),
        INVALID,
        f"dataset_uri: {datasets / 'missing.jsonl'} is not a readable file",
    )

    (datasets / "train.jsonl").write_text((outside / "train.jsonl").read_text())
    inside = (datasets / "train.jsonl").as_uri()
    expect(
        start_run,
        run(dataset_uri=inside, base_model=str(outside / "model")),
        DENIED,
        "base_model: ",
        "LIMI_TRAINER_MODEL_ROOTS",
    )
    expect(start_run, run(dataset_uri=inside, base_model="/etc"), DENIED, "base_model: ")
    expect(
        start_run,
        run(dataset_uri=inside, base_model="../../outside/model"),
        INVALID,
        "base_model: must be a Hugging Face model id",
    )
    expect(
        start_run, run(dataset_uri=inside, base_model="~/model"), INVALID, "base_model: must be a Hugging Face model id"
    )


def test_the_dataset_roots_are_what_the_setting_says(service_process, tmp_path, outside):
    _, channel = start(service_process, "trainer", LIMI_TRAINER_DATASET_ROOTS=str(outside))
    start_run = trainer_pb2_grpc.TrainerServiceStub(channel).StartRun
    curator_datasets = tmp_path / "curator" / "datasets"
    expect(
        start_run,
        trainer_pb2.StartRunRequest(dataset_uri=str(curator_datasets / "a.jsonl")),
        DENIED,
        "dataset_uri: ",
        str(outside),
    )
    expect(
        start_run,
        trainer_pb2.StartRunRequest(dataset_uri=str(outside / "missing.jsonl")),
        INVALID,
        "dataset_uri: ",
        "is not a readable file",
    )


def test_evaluate_serves_checkpoints_only_from_the_checkpoint_roots_and_suites_from_the_suites_folder(
    service_process, tmp_path, outside
):
    runs = tmp_path / "trainer" / "runs"
    runs.mkdir(parents=True)
    (runs / "planted").symlink_to(outside / "model")
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "planted.toml").symlink_to(outside / "suite.toml")
    _, channel = start(
        service_process, "evaluator", LIMI_EVALUATOR_CONSUME_CHECKPOINTS="false", LIMI_EVALUATOR_SUITES_DIR=str(suites)
    )
    evaluate = evaluator_pb2_grpc.EvaluatorServiceStub(channel).Evaluate

    def request(**fields) -> evaluator_pb2.EvaluateRequest:
        return evaluator_pb2.EvaluateRequest(**{"checkpoint_id": "ck", "benchmark": "limi-basics", **fields})

    for refused in (
        str(outside / "model"),
        (outside / "model").as_uri(),
        "/etc",
        f"{runs}/../../outside/model",
        str(runs / "planted"),
    ):
        expect(evaluate, request(checkpoint_uri=refused), DENIED, "checkpoint_uri: ", "LIMI_EVALUATOR_CHECKPOINT_ROOTS")
    expect(evaluate, request(checkpoint_uri="outside/model"), INVALID, "checkpoint_uri: must be an absolute path")
    expect(
        evaluate,
        request(checkpoint_uri=str(runs / "run-1" / "step-3")),
        grpc.StatusCode.FAILED_PRECONDITION,
        f"checkpoint path {runs / 'run-1' / 'step-3'} does not exist",
    )

    for refused in (
        str(outside / "suite.toml"),
        "/etc/passwd.toml",
        str(suites / "planted.toml"),
        f"{suites}/../outside/suite.toml",
    ):
        expect(evaluate, request(benchmark=refused), DENIED, "benchmark: ", "LIMI_EVALUATOR_SUITES_DIR")
    expect(evaluate, request(benchmark="../outside/suite.toml"), INVALID, "benchmark: must be an absolute path")


def test_a_tokenizer_is_read_only_under_the_tokenizer_roots(service_process, tmp_path, outside):
    trainer_models = tmp_path / "trainer" / "models"
    trainer_models.mkdir(parents=True)
    (trainer_models / "planted").symlink_to(outside)
    _, channel = start(service_process, "curator")
    stub = curator_pb2_grpc.CuratorServiceStub(channel)
    calls = {
        "CurateDataset": lambda tokenizer: (
            stub.CurateDataset,
            curator_pb2.CurateDatasetRequest(name="d", size=1, tokenizer=tokenizer),
        ),
        "SynthesizeQueries": lambda tokenizer: (
            stub.SynthesizeQueries,
            curator_pb2.SynthesizeQueriesRequest(
                pull_requests_jsonl=b'{"repository": "a/b"}\n',
                endpoint="http://127.0.0.1:9/v1",
                model="m",
                tokenizer=tokenizer,
            ),
        ),
    }
    for call in calls.values():
        for refused in (
            str(outside / "tokenizer.json"),
            str(outside),
            "/etc/passwd",
            str(trainer_models / "planted" / "tokenizer.json"),
            f"file://{trainer_models}/../../outside/tokenizer.json",
        ):
            expect(*call(refused), DENIED, "tokenizer: ", "LIMI_CURATOR_TOKENIZER_ROOTS")
        expect(*call("tokenizer.json"), INVALID, "tokenizer: must be an absolute path")
        expect(
            *call(str(trainer_models / "missing" / "tokenizer.json")),
            INVALID,
            "tokenizer: ",
            "is not a tokenizer.json file",
        )


def test_workspace_files_stay_in_the_workspace(service_process):
    _, channel = start(service_process, "rollout", LIMI_ROLLOUT_CONSUME_QUERIES="false")
    run_episode = rollout_pb2_grpc.RolloutServiceStub(channel).RunEpisode
    for path in ("../escape.py", "/etc/passwd", "a/../../escape.py", ""):
        query = query_pb2.Query(
            text="fix it", workspace_files=[query_pb2.WorkspaceFile(path="ok.py"), query_pb2.WorkspaceFile(path=path)]
        )
        expect(
            run_episode,
            rollout_pb2.RunEpisodeRequest(query=query),
            INVALID,
            "query.workspace_files[1].path: must be a relative path",
        )

    _, channel = start(service_process, "sandbox", LIMI_SANDBOX_POOL_SIZE="0", LIMI_SANDBOX_BACKENDS="bwrap")
    create = sandbox_pb2_grpc.SandboxServiceStub(channel).CreateSession
    for path, reason in (("../escape.py", "leaves the workspace"), ("/etc/passwd", "is outside the workspace")):
        request = sandbox_pb2.CreateSessionRequest(files=[sandbox_pb2.File(path=path, content=b"x")])
        expect(create, request, INVALID, "files[0].path: ", reason)
