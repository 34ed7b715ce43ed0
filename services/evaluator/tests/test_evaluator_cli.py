"""`limi-evaluate`: its help, a real run against an endpoint, a HumanEval sanity run, and its exit codes."""

from __future__ import annotations

import io
import pathlib
import re
import subprocess
import sys

import pytest

from limi_core.processes import free_port
from limi_evaluator.cli import build_parser, main
from limi_testing.expert import expert_reply
from limi_testing.scripted_policy import ScriptedPolicyServer

SUITE = 'name = "cli-small"\nmax_rounds = 2\npass_score = 10\n[generate]\nfamily = "workspace-basics"\nseed = 3\nsplit = "test"\ncount = 2\n'


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


def test_help_explains_every_flag():
    text = build_parser().format_help()
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{action.option_strings} has no help"
    installed = subprocess.run(
        [sys.executable, "-c", "from limi_evaluator.cli import main; raise SystemExit(main(['--help']))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.returncode == 0 and "--checkpoint DIR" in installed.stdout and "--reference" in installed.stdout


def test_list_benchmarks(tmp_path):
    code, out = run(["--list-benchmarks", "--data-dir", str(tmp_path)])
    assert (
        code == 0
        and re.search(r"^limi-basics\s+suite\s+Workspace basics", out, re.M)
        and re.search(r"^humaneval\s+humaneval", out, re.M)
    )


def test_an_endpoint_is_evaluated_and_reported(stack, tmp_path):
    suite = tmp_path / "cli-small.toml"
    suite.write_text(SUITE)
    common = [
        "--sandbox",
        stack.sandbox_address,
        "--rollout",
        stack.rollout_address,
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "reports"),
    ]
    with ScriptedPolicyServer(expert_reply, model="expert") as policy:
        code, out = run(["--endpoint", policy.endpoint, "--benchmark", str(suite), "--dataset-size", "12", *common])
    assert code == 0, out
    assert "cli-small on expert   (Avg = 100.00)" in out and re.search(r"^\s+SR@2\s+100\.00$", out, re.M)
    report = pathlib.Path(re.search(r"report: file://(\S+)", out).group(1))
    assert report.is_file() and report.parent.parent == tmp_path / "reports"
    code, out = run(["--reference", "canonical", "--benchmark", "humaneval", "--limit", "5", *common])
    assert code == 0 and "humaneval-canonical on reference   (pass@1 = 100.00)" in out and out.count(" P\n") == 5


def test_bad_input_exits_with_a_reason(tmp_path, capsys):
    common = [
        "--data-dir",
        str(tmp_path),
        "--sandbox",
        f"127.0.0.1:{free_port()}",
        "--rollout",
        f"127.0.0.1:{free_port()}",
    ]
    assert run(["--endpoint", "http://127.0.0.1:1/v1", "--benchmark", "nope", *common])[0] == 2
    assert "benchmark: unknown benchmark 'nope'" in capsys.readouterr().err
    assert run(["--benchmark", "limi-basics", *common])[0] == 2
    assert "name a checkpoint directory or an --endpoint" in capsys.readouterr().err
    assert run(["--checkpoint", str(tmp_path / "missing"), *common])[0] == 5
    assert f"checkpoint path {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert run(["--endpoint", f"http://127.0.0.1:{free_port()}/v1", *common])[0] == 4
    assert "is unreachable" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "b", "tasks": [}')
    assert run(["--endpoint", "http://127.0.0.1:1/v1", "--benchmark", str(broken), *common])[0] == 2
    assert "is not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        run(["--samples", "many"])
    assert caught.value.code == 2
