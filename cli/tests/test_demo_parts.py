"""The demo's pieces that need no stack: the bundled pool, the teacher's handling of a correction, bad input.

The bundled pool must be exactly what its generator writes (so nobody edits it by hand), hold
LIMI's 60 real and 18 synthetic queries, and share no query with the held-out `limi-basics`
suite. The teacher must follow a reviewer's correction the same way every time. Bad command
lines exit 2 with a sentence naming the option; a base model that is not a model exits 1.
"""

from __future__ import annotations

import json
import subprocess
import sys

from limi_cli import demo_pool
from limi_cli.demo_teacher import CHECKED, CORRECTION, Teacher, corrected_reply
from limi_evaluator.basics import generate


def test_the_bundled_pool_is_what_the_generator_writes():
    assert demo_pool.BUNDLED.read_text() == demo_pool.render(demo_pool.pool_records())


def test_the_pool_holds_60_real_and_18_synthetic_queries_none_of_them_held_out():
    records = [json.loads(line) for line in demo_pool.BUNDLED.read_text().splitlines()]
    assert len(records) == 78 and len({r["id"] for r in records}) == 78 and len({r["text"] for r in records}) == 78
    assert [r["source"] for r in records].count("real") == 60 and [r["source"] for r in records].count("synthetic") == 18
    held_out = {subtask.query for task in generate(0, "test", 12) for subtask in task.subtasks}
    assert not held_out & {r["text"] for r in records}
    # Every task that edits, copies or imports something starts from the files it needs.
    for record in records:
        if record["labels"]["kind"] in ("replace-word", "copy-file") or record["labels"]["subtask"] == "2":
            assert record.get("files"), record["id"]


def conversation(query: str, *turns: dict) -> list[dict]:
    return [{"role": "system", "content": "s"}, {"role": "user", "content": query}, *turns]


def call(name: str, arguments: dict) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
                                                                 "function": {"name": name, "arguments": json.dumps(arguments)}}]}


def test_the_teacher_follows_a_correction_then_shows_the_workspace():
    query = "Create the file notes/alpha.txt with the content: cedar 42"
    write = call("write_file", {"path": "notes/alpha.txt", "content": "cedar 42\n"})
    messages = conversation(query, write, {"role": "tool", "content": "wrote 9 bytes", "tool_call_id": "c"},
                            {"role": "user", "content": CORRECTION})
    listing = corrected_reply(messages)
    assert listing.tool_calls == (("list_dir", '{"path": "."}'),)
    messages += [call("list_dir", {"path": "."}), {"role": "tool", "content": "notes/", "tool_call_id": "c"}]
    assert corrected_reply(messages).content == CHECKED
    # Before the correction, or without one, the expert's plan decides.
    assert corrected_reply(conversation(query)) is None
    assert Teacher().reply({"messages": conversation(query)}).tool_calls[0][0] == "write_file"


def test_a_correction_before_the_plan_is_done_finishes_the_plan_first():
    query = "Create the directory out and copy data/ember.txt into it."
    reply = corrected_reply(conversation(query, {"role": "user", "content": CORRECTION}))
    assert reply.tool_calls[0][0] == "shell" and "cp data/ember.txt out/" in reply.tool_calls[0][1]


def run_limi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "limi_cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_demo_options_exit_2_with_a_sentence(tmp_path):
    for args, words in ((["--samples", "0,8"], "between 1 and 78"), (["--samples", "eight"], "separated by commas"),
                        (["--epochs", "-1"], "--epochs must not be negative")):
        done = run_limi("demo", "--data-dir", str(tmp_path), *args)
        assert done.returncode == 2 and words in done.stderr, done.stderr


def test_a_base_model_that_is_not_a_model_exits_1(tmp_path):
    done = run_limi("demo", "--data-dir", str(tmp_path), "--base-model", str(tmp_path / "nothing"))
    assert done.returncode == 1 and "is not a Hugging Face model directory" in done.stderr, done.stderr


def test_the_report_holds_the_table_the_numbers_and_the_curves(tmp_path):
    from limi.evaluation.v1 import evaluation_pb2 as ev
    from limi_cli.demo_report import Scored, ToolChoice, table, write_report

    def result(avg: float, passed: int) -> ev.EvalResult:
        tasks = [ev.TaskResult(task_id=f"t{i}", subtask_id="1", passed=i < passed) for i in range(4)]
        return ev.EvalResult(id=f"evaluation:{avg}", aggregate={"Avg": avg, "FTFC": avg, "SR@3": 25.0 * passed}, tasks=tasks)

    scored = [Scored("base model", 0, "base", result(0.0, 0), ToolChoice(0, 4)),
              Scored("fine-tuned on 8", 8, "ft8", result(10.0, 1), ToolChoice(2, 4)),
              Scored("fine-tuned on 78", 78, "ft78", result(40.0, 3), ToolChoice(4, 4))]
    text = table(scored)
    assert "fine-tuned on 78" in text and "3/4" in text and "100%" in text and "50%" in text
    page = write_report(tmp_path, scored, teacher="scripted", timings={"train": 1.0}, datasets={8: "file:///d8"}, notes=["n"])
    assert "fine-tuned on 8" in page.read_text() and (tmp_path / "samples.png").stat().st_size > 0 and (tmp_path / "tools.png").exists()
    results = json.loads((tmp_path / "results.json").read_text())
    assert [m["aggregate"]["Avg"] for m in results["models"]] == [0.0, 10.0, 40.0]
    assert [m["first_move_right_tool"] for m in results["models"]] == [0, 2, 4] and results["datasets"] == {"8": "file:///d8"}
