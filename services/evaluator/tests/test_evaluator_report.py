"""The HTML report rendered by headless Chromium: the DOM it builds, the plots it loads, a screenshot.

Skipped (with the reason) only where no Chromium is installed; scripts/setup is to install
Debian's `chromium`.
"""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess

import matplotlib.image
import pytest

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core import limi_format
from limi_evaluator import report, scores
from limi_evaluator.store import LeaderboardRow

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


def trajectory(key: str, text: str) -> tp.Trajectory:
    t = tp.Trajectory(id=key.split("__")[0])
    t.steps.add(index=0, role=tp.ROLE_USER, content=text)
    assistant = t.steps.add(index=1, role=tp.ROLE_ASSISTANT, content="")
    assistant.tool_calls.add(id="c1", name="write_file", arguments_json='{"path": "a.txt", "content": "one"}')
    t.steps.add(index=2, role=tp.ROLE_TOOL, tool_result=tp.ToolResult(tool_call_id="c1", output="wrote 3 bytes"))
    t.steps.add(index=3, role=tp.ROLE_ASSISTANT, content="done <b>not html</b>")
    t.outcome.status = tp.OUTCOME_STATUS_COMPLETED
    return t


def sample_result() -> tuple[ev.EvalResult, dict[str, tp.Trajectory]]:
    result = ev.EvalResult(
        id="evaluation:ck-2:limi-basics",
        checkpoint_id="ck-2",
        benchmark="limi-basics",
        policy_endpoint="http://127.0.0.1:8000/v1",
    )
    first = result.tasks.add(task_id="chain-1", subtask_id="1", score=10, passed=True, attempts=2)
    first.rounds.add(
        round=1,
        score=5,
        passed=False,
        failed_items=["b.txt holds two: exit code 1, expected 0 (<FileNotFoundError>)"],
        trajectory_id="chain-1__1__r1",
    )
    first.rounds.add(round=2, score=10, passed=True, trajectory_id="chain-1__1__r2")
    second = result.tasks.add(task_id="chain-1", subtask_id="2", score=0, passed=False, attempts=1)
    second.rounds.add(
        round=1, score=0, passed=False, failed_items=["d.txt holds one: wrong"], trajectory_id="chain-1__2__r1"
    )
    first.metrics["best_round"] = 2
    result.aggregate.update(scores.agentic_metrics(list(result.tasks), max_rounds=3))
    result.started_at.FromSeconds(1_790_000_000)
    result.finished_at.FromSeconds(1_790_000_100)
    keys = ["chain-1__1__r1", "chain-1__1__r2", "chain-1__2__r1"]
    return result, {key: trajectory(key, f"query of {key}") for key in keys}


class DomIndex(html.parser.HTMLParser):
    """Elements by id, attributes of img and a elements, and rows of the tasks table."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, dict] = {}
        self.images: list[dict] = []
        self.links: list[str] = []
        self.task_rows: list[dict] = []
        self.body: dict = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids[attributes["id"]] = attributes
        if tag == "img":
            self.images.append(attributes)
        if tag == "a":
            self.links.append(attributes.get("href", ""))
        if tag == "tr" and "task-row" in attributes.get("class", ""):
            self.task_rows.append(attributes)
        if tag == "body":
            self.body = attributes


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian package `chromium`; scripts/setup should install it)"
)
def test_the_report_renders_in_headless_chromium_with_tables_links_and_plots(tmp_path):
    result, trajectories = sample_result()
    history = [
        LeaderboardRow(
            "evaluation:ck-1:limi-basics", "ck-1", "limi-basics", {"Avg": 20.0, "FTFC": 10.0}, 10, 5, "", 1.0
        )
    ]
    page = report.write_report(
        tmp_path / "report",
        result,
        trajectories,
        history,
        per_model={"model": "ck-2", "subtasks": []},
        dataset_size=40,
        step=9,
    )
    folder = page.parent
    assert sorted(p.name for p in (folder / "trajectories").iterdir()) == [
        f"{key}.json" for key in sorted(trajectories)
    ]
    for key, original in trajectories.items():
        restored = limi_format.limi_to_trajectory(
            limi_format.loads_sample((folder / "trajectories" / f"{key}.json").read_text())
        )
        assert restored == original
    assert json.loads((folder / "result.json").read_text())["id"] == result.id

    dom = subprocess.run(
        [CHROMIUM, *HEADLESS, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    index = DomIndex()
    index.feed(dom.stdout)
    assert index.body.get("data-images-loaded") == "true", "a plot did not load in the browser"
    assert {image["src"] for image in index.images} == {"score_per_checkpoint.png", "score_vs_samples.png"}
    assert {"title", "summary", "aggregate", "tasks", "leaderboard", "definitions", "headline"} <= set(index.ids)
    assert index.ids["headline"]["data-metric"] == "Avg"
    assert [(r["data-task"], r["data-subtask"], r["class"]) for r in index.task_rows] == [
        ("chain-1", "1", "task-row passed"),
        ("chain-1", "2", "task-row failed"),
    ]
    assert [link for link in index.links if link.startswith("trajectories/")] == [
        f"trajectories/{key}.json" for key in trajectories
    ]
    assert "&lt;FileNotFoundError&gt;" in dom.stdout and "<FileNotFoundError>" not in dom.stdout  # escaped, not markup
    assert "ck-1" in dom.stdout and "ck-2" in dom.stdout

    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [CHROMIUM, *HEADLESS, f"--screenshot={screenshot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05, "the screenshot is blank"
