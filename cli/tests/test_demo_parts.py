"""The demo's pieces that need no stack: the bundled pool, the teacher's handling of a correction, bad input.

The bundled pool must be exactly what its generator writes (so nobody edits it by hand), hold
LIMI's 60 real and 18 synthetic queries, and share no query with the held-out `limi-basics`
suite; the uncurated pool must be other tasks of the same split. The teacher must follow a
reviewer's correction the same way every time, and the noisier teacher must show each defect it
declares. The report must link every trajectory and render in headless Chromium. Bad command
lines exit 2 with a sentence naming the option; a base model that is not a model exits 1.
"""

from __future__ import annotations

import collections
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from limi_cli import demo_pool
from limi_cli.demo_teacher import CHECKED, CORRECTION, Teacher, corrected_reply
from limi_evaluator.basics import generate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
]


def test_the_bundled_pool_is_what_the_generator_writes():
    assert demo_pool.BUNDLED.read_text() == demo_pool.render(demo_pool.pool_records())


def test_the_pool_holds_60_real_and_18_synthetic_queries_none_of_them_held_out():
    records = [json.loads(line) for line in demo_pool.BUNDLED.read_text().splitlines()]
    assert len(records) == 78 and len({r["id"] for r in records}) == 78 and len({r["text"] for r in records}) == 78
    assert [r["source"] for r in records].count("real") == 60 and [r["source"] for r in records].count(
        "synthetic"
    ) == 18
    held_out = {subtask.query for task in generate(0, "test", 12) for subtask in task.subtasks}
    assert not held_out & {r["text"] for r in records}
    # Every task that edits, copies or imports something starts from the files it needs.
    for record in records:
        if record["labels"]["kind"] in ("replace-word", "copy-file") or record["labels"]["subtask"] == "2":
            assert record.get("files"), record["id"]


def conversation(query: str, *turns: dict) -> list[dict]:
    return [{"role": "system", "content": "s"}, {"role": "user", "content": query}, *turns]


def call(name: str, arguments: dict) -> dict:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}],
    }


def test_the_teacher_follows_a_correction_then_shows_the_workspace():
    query = "Create the file notes/alpha.txt with the content: cedar 42"
    write = call("write_file", {"path": "notes/alpha.txt", "content": "cedar 42\n"})
    messages = conversation(
        query,
        write,
        {"role": "tool", "content": "wrote 9 bytes", "tool_call_id": "c"},
        {"role": "user", "content": CORRECTION},
    )
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
    for args, words in (
        (["--samples", "0,8"], "between 1 and 78"),
        (["--samples", "eight"], "separated by commas"),
        (["--epochs", "-1"], "--epochs must not be negative"),
        (["--uncurated", "lots"], "factor such as 5x"),
        (["--uncurated", "50x"], "between 1x and 20x"),
    ):
        done = run_limi("demo", "--data-dir", str(tmp_path), *args)
        assert done.returncode == 2 and words in done.stderr, done.stderr


def test_a_base_model_that_is_not_a_model_exits_1(tmp_path):
    done = run_limi("demo", "--data-dir", str(tmp_path), "--base-model", str(tmp_path / "nothing"))
    assert done.returncode == 1 and "is not a Hugging Face model directory" in done.stderr, done.stderr


def sample_scores(tmp_path) -> list:
    from limi.evaluation.v1 import evaluation_pb2 as ev
    from limi_cli.demo_report import Scored, ToolChoice

    def result(name: str, avg: float, passed: int) -> ev.EvalResult:
        folder = tmp_path / "evaluations" / name
        (folder / "trajectories").mkdir(parents=True)
        tasks = []
        for i in range(4):
            rounds = [
                ev.RoundResult(
                    round=1, score=10.0 if i < passed else 3.0, passed=i < passed, trajectory_id=f"{name}-t{i}-r1"
                )
            ]
            (folder / "trajectories" / f"{name}-t{i}-r1.json").write_text("{}")
            tasks.append(
                ev.TaskResult(task_id=f"t{i}", subtask_id="1", passed=i < passed, score=rounds[0].score, rounds=rounds)
            )
        return ev.EvalResult(
            id=f"evaluation:{name}",
            aggregate={"Avg": avg, "FTFC": avg, "SR@3": 25.0 * passed},
            tasks=tasks,
            report_uri=(folder / "report.html").as_uri(),
        )

    return [
        Scored("base model", 0, "base", result("base", 0.0, 0), ToolChoice(0, 4)),
        Scored("curated 8", 8, "c8", result("c8", 10.0, 1), ToolChoice(2, 4)),
        Scored("curated 78", 78, "c78", result("c78", 40.0, 3), ToolChoice(4, 4)),
        Scored("uncurated 78 (random)", 78, "u78", result("u78", 20.0, 2), ToolChoice(3, 4), curated=False),
        Scored("uncurated all 390", 390, "u390", result("u390", 30.0, 2), ToolChoice(3, 4), curated=False),
    ]


def test_the_report_holds_the_table_the_numbers_the_curves_and_a_link_per_trajectory(tmp_path):
    from limi_cli.demo_report import table, write_report

    scored = sample_scores(tmp_path)
    text = table(scored)
    assert "curated 78" in text and "3/4" in text and "100%" in text and "50%" in text
    datasets = {"curated 8": "file:///d8", "uncurated all 390": "file:///u"}
    page = write_report(
        tmp_path / "report", scored, teacher="scripted", timings={"train": 1.0}, datasets=datasets, notes=["n"]
    )
    html_text = page.read_text()
    assert "uncurated all 390" in html_text and (tmp_path / "report" / "samples.png").stat().st_size > 0
    # Every round of every model links to its trajectory file, which exists.
    links = [line for line in html_text.split('href="')[1:] if "/trajectories/" in line]
    assert len(links) == 5 * 4
    for link in links:
        assert pathlib.Path(link.split('"')[0].removeprefix("file://")).is_file()
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert [m["aggregate"]["Avg"] for m in results["models"]] == [0.0, 10.0, 40.0, 20.0, 30.0]
    assert [m["curated"] for m in results["models"]] == [True, True, True, False, False] and results[
        "datasets"
    ] == datasets


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian package `chromium`; scripts/setup installs it)"
)
def test_the_report_renders_in_headless_chromium(tmp_path):
    from limi_cli.demo_report import write_report

    page = write_report(
        tmp_path / "report",
        sample_scores(tmp_path),
        teacher="scripted",
        timings={"train": 1.0},
        datasets={"curated 8": "file:///d8"},
        notes=["n"],
    )
    done = subprocess.run(
        [CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'chrome'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    # The browser parsed both tables whole and loaded the plot.
    assert dom.count("<tr>") >= 1 + 5 + 1 + 4 and 'id="models"' in dom and 'class="tasks"' in dom
    assert "curated 78" in dom and "uncurated 78 (random)" in dom and 'src="samples.png"' in dom
    shot = tmp_path / "page.png"
    subprocess.run(
        [
            CHROMIUM,
            *HEADLESS,
            f"--user-data-dir={tmp_path / 'chrome2'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a rendered page with a plot, not a blank one


def test_the_noisy_teacher_has_each_defect_and_is_stable_per_query():
    from limi_cli.demo_noisy_teacher import GROUPS, group_of, noisy_reply
    from limi_evaluator import basics

    queries = [s.query for t in basics.generate(11, "train", 300) for s in t.subtasks]
    groups = collections.Counter(group_of(q) for q in queries)
    assert set(groups) == {name for name, _ in GROUPS}
    for name, share in GROUPS:  # about the declared shares
        assert abs(100 * groups[name] / len(queries) - share) < 7, groups
    for query in queries[:60]:
        first = noisy_reply({"messages": [{"role": "user", "content": query}]})
        assert first == noisy_reply({"messages": [{"role": "user", "content": query}]})
        plan = basics.plan_for(query)
        group = group_of(query)
        if group == "abandoned":
            assert not first.tool_calls and "```" in first.content
        elif group == "failed":
            assert first.tool_calls[0][0] == "read_file"
        elif group == "malformed":
            with pytest.raises(ValueError):
                json.loads(first.tool_calls[0][1])
        elif group == "wrong-arguments":
            assert first.tool_calls[0][0] == plan[0].name and json.loads(first.tool_calls[0][1]) != plan[0].arguments
        else:
            assert first.tool_calls == ((plan[0].name, plan[0].arguments_json()),)
    # The teacher answers as the noisy one when asked for that model.
    from limi_cli.demo_noisy_teacher import NOISY_MODEL

    abandoned = next(q for q in queries if group_of(q) == "abandoned")
    assert not Teacher().reply({"model": NOISY_MODEL, "messages": [{"role": "user", "content": abandoned}]}).tool_calls
    assert (
        Teacher().reply({"model": "scripted-expert", "messages": [{"role": "user", "content": abandoned}]}).tool_calls
    )


def test_the_uncurated_pool_is_other_tasks_of_the_training_split():
    pool = demo_pool.uncurated_records(5)
    curated = demo_pool.pool_records()
    assert len(pool) == 5 * 78 and len({r["id"] for r in pool}) == len(pool)
    assert not {r["labels"]["task"] for r in pool} & {r["labels"]["task"] for r in curated}
    # One query per text, as the curator's pool holds them (a chain's first step can read like another task).
    assert len({r["text"] for r in pool}) == len(pool) and not {r["text"] for r in pool} & {r["text"] for r in curated}
    assert {r["labels"]["kind"] for r in pool} == {r["labels"]["kind"] for r in curated}
    held_out = {subtask.query for task in generate(0, "test", 12) for subtask in task.subtasks}
    assert not held_out & {r["text"] for r in pool}


def test_bad_models_import_input_exits_2_with_a_sentence(tmp_path):
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    done = run_limi("models", "import", str(not_gguf))
    assert done.returncode == 2 and "is not a GGUF file" in done.stderr, done.stderr
    done = run_limi("models", "import", str(tmp_path / "missing.gguf"))
    assert done.returncode == 2 and "does not exist" in done.stderr, done.stderr
    (tmp_path / "folder").mkdir()
    done = run_limi("models", "import", str(tmp_path / "folder"))
    assert done.returncode == 2 and "without config.json" in done.stderr, done.stderr
