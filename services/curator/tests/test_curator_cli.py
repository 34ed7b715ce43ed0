"""`limi curator ...` against a real curator process: every subcommand, broken files, exit codes."""

from __future__ import annotations

import json

import pytest

from limi_core import limi_format
from limi_core.health_check import wait_for_health
from limi_core.processes import free_port
from limi_curator.cli import build_parser, main
from limi_testing.synthetic_prs import generate_pull_requests

SUBCOMMANDS = (
    "import",
    "list",
    "publish-set",
    "emit",
    "synthesize",
    "dedupe",
    "curate",
    "export-limi",
    "import-limi",
    "convert-gemini",
    "report",
)


@pytest.fixture
def address(service_process):
    service = service_process("curator")
    wait_for_health(service.grpc_address, "SERVING", timeout=60, process=service.process)
    return service.grpc_address


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_explains_itself(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and f"usage: limi curator {command}" in out
    for action in build_parser()._subparsers._group_actions[0].choices[command]._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"


def test_bad_usage_exits_2(capsys):
    code, _, err = run(capsys, "curate", "--name", "x")
    assert code == 2 and "the following arguments are required: --size" in err


def test_convert_gemini_runs_locally_and_names_the_broken_field(capsys, tmp_path):
    log = {
        "events": [
            {
                "type": "api_request_full",
                "data": {
                    "full_request": {
                        "messages": [
                            {"role": "user", "parts": [{"text": "List the files"}]},
                            {
                                "role": "model",
                                "parts": [{"functionCall": {"id": "c1", "name": "ls", "args": {"path": "."}}}],
                            },
                            {
                                "role": "user",
                                "parts": [{"functionResponse": {"id": "c1", "response": {"output": "README.md"}}}],
                            },
                        ]
                    }
                },
            }
        ]
    }
    (tmp_path / "good.json").write_text(json.dumps(log))
    code, out, _ = run(
        capsys,
        "convert-gemini",
        str(tmp_path / "good.json"),
        str(tmp_path / "good.json"),
        "--out",
        str(tmp_path / "out.jsonl"),
    )
    assert code == 0 and "converted 2 event log(s)" in out
    samples = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert samples[0]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"path": "."}
    log["events"][0]["data"]["full_request"]["messages"][2]["parts"][0]["functionResponse"]["response"] = "README.md"
    (tmp_path / "bad.json").write_text(json.dumps(log))
    code, _, err = run(capsys, "convert-gemini", str(tmp_path / "bad.json"), "--out", str(tmp_path / "bad.jsonl"))
    assert code == 2
    assert err.strip() == (
        "limi curator convert-gemini: bad.json field events[0].data.full_request.messages[2].parts[0].functionResponse.response: "
        "must be an object, got str"
    )


def test_the_curator_workflow_from_the_command_line(capsys, tmp_path, address, scripted_llm, trajectory_factory):
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "\n".join(
            json.dumps(
                {
                    "text": f"Write a {lang} command line tool that deduplicates photos by perceptual hash.",
                    "category": "backend",
                }
            )
            for lang in ("Go", "Rust", "Python")
        )
        + "\n"
    )
    code, out, _ = run(capsys, "--address", address, "import", str(queries))
    assert code == 0 and out.startswith("imported 3 queries from")
    code, out, _ = run(capsys, "--address", address, "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["status"] for r in rows] == ["pending"] * 3
    code, out, _ = run(
        capsys, "--address", address, "publish-set", "--name", "photos", "--ids", rows[0]["id"], rows[1]["id"]
    )
    assert code == 0 and "version 1, 2 queries" in out
    set_id = out.split()[2]
    code, out, _ = run(capsys, "--address", address, "emit", "--set", set_id)
    assert code == 0 and out.strip() == "emitted 2 query tasks (0 had been emitted before)"
    code, out, _ = run(capsys, "--address", address, "emit", "--set", set_id)
    assert out.strip() == "emitted 0 query tasks (2 had been emitted before)"

    prs = tmp_path / "prs.jsonl"
    prs.write_text("".join(json.dumps(r) + "\n" for r in generate_pull_requests(60)))
    report = tmp_path / "synthesis.md"
    code, out, _ = run(
        capsys,
        "--address",
        address,
        "synthesize",
        str(prs),
        "--endpoint",
        scripted_llm.url,
        "--model",
        "scripted",
        "--select",
        "5",
        "--report",
        str(report),
        "--add-to-pool",
    )
    assert (
        code == 0
        and "selected 5" in out
        and "added 5 to the pool" in out
        and out.startswith("input            kept    60")
    )
    assert report.read_text().startswith("# PR-to-task synthesis")
    code, out, _ = run(capsys, "--address", address, "dedupe")
    assert code == 0 and out.startswith("# Dedupe and decontamination") and "Scanned 8 queries" in out

    samples = [limi_format.trajectory_to_limi(trajectory_factory(f"t{i}", turns=i + 1), strict=True) for i in range(3)]
    dataset_file = tmp_path / "limi.json"
    dataset_file.write_text(json.dumps(samples))
    code, out, _ = run(
        capsys,
        "--address",
        address,
        "import-limi",
        str(dataset_file),
        "--publish-as",
        "seed",
        "--category",
        "debugging",
    )
    assert code == 0 and "imported 3 trajectories" in out
    dataset_id = out.rsplit("dataset ", 1)[1].split()[0]
    code, out, _ = run(capsys, "--address", address, "report", dataset_id, "--out", str(tmp_path / "report"))
    assert code == 0 and out.startswith("# Dataset seed v1")
    assert (tmp_path / "report" / f"{dataset_id}.tokens.png").read_bytes().startswith(b"\x89PNG")
    code, out, _ = run(
        capsys,
        "--address",
        address,
        "export-limi",
        dataset_id,
        "--strict",
        "--json-array",
        "--out",
        str(tmp_path / "export.json"),
    )
    assert code == 0 and json.loads((tmp_path / "export.json").read_text()) == samples
    code, out, _ = run(capsys, "--address", address, "curate", "--name", "from-cli", "--size", "2")
    assert code == 0 and out.startswith("dataset from-cli-") and "2 samples" in out


@pytest.mark.parametrize(
    "name, content, command, message",
    [
        (
            "queries.jsonl",
            '{"text": "Speed up the importer"}\n{"text": "Fix", "category": "astrology"}\n',
            "import",
            "limi curator import: content: queries.jsonl line 2 field category: unknown category 'astrology'",
        ),
        (
            "queries.csv",
            'text,category,author\n"Speed up the importer",optimization\n',
            "import",
            "limi curator import: content: queries.csv line 2 field author: is missing",
        ),
        (
            "limi.jsonl",
            '{"messages": [{"role": "user", "content": "x"}]}\n{"messages": [{"role": "assistant", "content": 7}]}\n',
            "import-limi",
            "limi curator import-limi: data: limi.jsonl line 2 field messages[0].content: must be a string or null",
        ),
        (
            "prs.jsonl",
            '{"repository": "a/b", "stars": 20000, "number": "12"}\n',
            "synthesize",
            "limi curator synthesize: pull_requests_jsonl: prs.jsonl line 1 field number: must be an integer",
        ),
    ],
)
def test_broken_files_exit_2_with_one_sentence_naming_file_line_and_field(
    capsys, tmp_path, address, scripted_llm, name, content, command, message
):
    path = tmp_path / name
    path.write_text(content)
    extra = ["--endpoint", scripted_llm.url, "--model", "m"] if command == "synthesize" else []
    code, out, err = run(capsys, "--address", address, command, str(path), *extra)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1, err


def test_missing_file_and_unreachable_curator(capsys, tmp_path):
    code, _, err = run(capsys, "--address", f"127.0.0.1:{free_port()}", "import", str(tmp_path / "nope.jsonl"))
    assert (
        code == 2
        and err.strip() == f"limi curator import: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"
    )
    (tmp_path / "q.jsonl").write_text('{"text": "x"}\n')
    code, _, err = run(
        capsys, "--address", f"127.0.0.1:{free_port()}", "--timeout", "3", "import", str(tmp_path / "q.jsonl")
    )
    assert code == 4 and "the curator at 127.0.0.1:" in err and "is unavailable" in err
