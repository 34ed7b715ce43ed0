"""What the demo shows at the end: the before/after table, a results JSON and an HTML report.

`Scored` is one evaluated model (the base, or a fine-tune on N curated or uncurated samples) with its EvalResult and,
read from the evaluation's saved trajectories, how often its first move in a subtask was a
well-formed call of the tool the task needs (`ToolChoice`: what a model learns first from agent
trajectories, before it gets outcomes right). `table(scored)` is the text table printed; `write_report(folder, ...)` writes
`index.html` (the table; Avg against the number of samples, curated and uncurated as two lines;
a per-task table with a link to every round's trajectory; the stage timings, what the teacher
was, links to each evaluation's own report and the datasets) and
`results.json` (the same numbers for scripts). It decides nothing and calls no service.
"""

from __future__ import annotations

import dataclasses
import html
import json
import pathlib

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi_evaluator.basics import plan_for

COLUMNS = ("FTFC", "SR@3", "RC@3", "Avg", "S_avg")


@dataclasses.dataclass(frozen=True)
class ToolChoice:
    right: int  # first assistant turns that call the tool the task's plan starts with
    total: int  # first rounds read

    @property
    def percent(self) -> float:
        return 100.0 * self.right / self.total if self.total else 0.0


def tool_choice(result: ev.EvalResult) -> ToolChoice:
    """First rounds whose first assistant turn is a parsed call of the right tool, from the saved trajectories."""
    folder = pathlib.Path(result.report_uri.removeprefix("file://")).parent / "trajectories"
    right = total = 0
    for task in result.tasks:
        if not task.rounds:
            continue
        try:
            sample = json.loads((folder / f"{task.rounds[0].trajectory_id}.json").read_text())
        except (OSError, ValueError):
            continue
        messages = sample.get("messages") or []
        query = next((m.get("content") for m in messages if m.get("role") == "user"), "")
        first = next((m for m in messages if m.get("role") == "assistant"), {})
        plan = plan_for(query if isinstance(query, str) else "")
        calls = first.get("tool_calls") or []
        total += 1
        if (
            plan
            and calls
            and isinstance(calls[0].get("function", {}).get("arguments"), dict)
            and calls[0]["function"].get("name") == plan[0].name
        ):
            right += 1
    return ToolChoice(right, total)


@dataclasses.dataclass(frozen=True)
class Scored:
    label: str
    samples: int  # training samples behind the model; 0 for the base model
    checkpoint_id: str
    result: ev.EvalResult
    tools: ToolChoice = ToolChoice(0, 0)
    # False: trained on the uncurated pool (a random draw, or all of it).
    curated: bool = True

    def metric(self, name: str) -> float:
        return float(self.result.aggregate.get(name, 0.0))

    @property
    def subtasks_passed(self) -> tuple[int, int]:
        return sum(1 for task in self.result.tasks if task.passed), len(self.result.tasks)


def table(scored: list[Scored]) -> str:
    width = max(len(s.label) for s in scored) + 2
    lines = [f"{'model':<{width}}" + "".join(f"{c:>8}" for c in COLUMNS) + f"{'passed':>10}{'right tool':>12}"]
    for s in scored:
        passed, total = s.subtasks_passed
        lines.append(
            f"{s.label:<{width}}"
            + "".join(f"{s.metric(c):>8.1f}" for c in COLUMNS)
            + f"{passed:>6}/{total:<3}"
            + f"{s.tools.percent:>11.0f}%"
        )
    return "\n".join(lines)


def _cell(value: str) -> str:
    return f"<td>{html.escape(value)}</td>"


def samples_plot(scored: list[Scored], path: pathlib.Path) -> pathlib.Path | None:
    """Avg against training samples: curated and uncurated fine-tunes as two lines, the base model at 0 on both."""
    tuned = [s for s in scored if s.samples]
    if not tuned:
        return None
    from limi_evaluator.plots import score_lines

    base = next((s for s in scored if not s.samples), None)
    lines = {}
    for curated, name in ((True, "curated (LIMI)"), (False, "uncurated (random draws, whole pool)")):
        points = sorted((s.samples, s.metric("Avg")) for s in tuned if s.curated == curated)
        if points:
            lines[name] = ([(0, base.metric("Avg"))] if base else []) + points
    return score_lines(lines, "Avg on held-out tasks (%)", "limi-basics Avg against training samples", path)


def _trajectory_links(result: ev.EvalResult, task: ev.TaskResult) -> str:
    folder = pathlib.Path(result.report_uri.removeprefix("file://")).parent / "trajectories"
    links = []
    for round_ in task.rounds:
        href = (folder / f"{round_.trajectory_id}.json").as_uri()
        mark = "pass" if round_.passed else f"{round_.score:.0f}/10"
        links.append(f'<a href="{html.escape(href)}">r{round_.round}: {mark}</a>')
    return " ".join(links)


def task_table(scored: list[Scored]) -> str:
    """One row per held-out subtask, one column per model: the best grade and a link to each round's trajectory."""
    order: list[tuple[str, str]] = []
    for s in scored:
        for task in s.result.tasks:
            if (task.task_id, task.subtask_id) not in order:
                order.append((task.task_id, task.subtask_id))
    header = "<tr><th>task</th>" + "".join(f"<th>{html.escape(s.label)}</th>" for s in scored) + "</tr>"
    rows = []
    for task_id, subtask_id in order:
        cells = []
        for s in scored:
            found = next((t for t in s.result.tasks if (t.task_id, t.subtask_id) == (task_id, subtask_id)), None)
            if found is None:
                cells.append("<td></td>")
                continue
            verdict = "passed" if found.passed else f"{found.score:.1f}/10"
            cells.append(
                f'<td class="{"ok" if found.passed else "no"}">{verdict}<br>{_trajectory_links(s.result, found)}</td>'
            )
        rows.append(f"<tr><td>{html.escape(task_id)}/{html.escape(subtask_id)}</td>{''.join(cells)}</tr>")
    return f'<table class="tasks">{header}{"".join(rows)}</table>'


def write_report(
    folder: pathlib.Path,
    scored: list[Scored],
    *,
    teacher: str,
    timings: dict[str, float],
    datasets: dict[str, str],
    notes: list[str],
) -> pathlib.Path:
    """Write index.html, samples.png and results.json into `folder`; return the HTML path."""
    folder.mkdir(parents=True, exist_ok=True)
    plot = ""
    if samples_plot(scored, folder / "samples.png"):
        plot = '<h2>Avg against the number of training samples</h2><img src="samples.png" alt="Avg against training samples">'
    rows = []
    for s in scored:
        passed, total = s.subtasks_passed
        report = s.result.report_uri
        link = f'<a href="{html.escape(report)}">report</a>' if report else ""
        rows.append(
            "<tr>"
            + _cell(s.label)
            + "".join(_cell(f"{s.metric(c):.1f}") for c in COLUMNS)
            + _cell(f"{passed}/{total}")
            + _cell(f"{s.tools.right}/{s.tools.total}")
            + f"<td>{link}</td></tr>"
        )
    header = (
        "<tr><th>model</th>"
        + "".join(f"<th>{c}</th>" for c in COLUMNS)
        + "<th>subtasks passed</th><th>first move: right tool</th><th></th></tr>"
    )
    timing_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{seconds:.1f} s</td></tr>" for name, seconds in timings.items()
    )
    dataset_rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(uri)}</td></tr>" for label, uri in datasets.items()
    )
    note_items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>limi demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
table.tasks td{{font-size:85%}}td.ok{{background:#ebfbee}}td.no{{background:#fff5f5}}</style></head>
<body><h1>limi demo: curate, collect, train, evaluate</h1>
<p>Teacher: {html.escape(teacher)}</p>
<h2>Held-out tasks (limi-basics), before and after fine-tuning</h2>
<table id="models">{header}{"".join(rows)}</table>
<p>FTFC: share of requirements met in the first round; SR@3: share of subtasks passed within 3 rounds (with
rubric feedback between rounds); RC@3: rounds left unused by passed subtasks; Avg: the mean of the three
(AgencyBench v1); S_avg: mean best grade. All in percent; definitions in the evaluator's reports. First move:
subtasks whose first model turn was a well-formed call of the tool the task needs. The held-out tasks use
words, names and numbers that no training task uses, and the affine-function kind is never trained on.</p>
{plot}
<h2>Per task</h2>
{task_table(scored)}
<h2>Datasets</h2><table><tr><th>fine-tune</th><th>file</th></tr>{dataset_rows}</table>
<h2>Time per stage</h2><table>{timing_rows}</table>
<ul>{note_items}</ul>
</body></html>
"""
    path = folder / "index.html"
    path.write_text(page)
    results = {
        "teacher": teacher,
        "timings_seconds": timings,
        "datasets": datasets,
        "notes": notes,
        "models": [
            {
                "label": s.label,
                "samples": s.samples,
                "curated": s.curated,
                "checkpoint_id": s.checkpoint_id,
                "evaluation_id": s.result.id,
                "aggregate": dict(s.result.aggregate),
                "subtasks_passed": s.subtasks_passed[0],
                "subtasks": s.subtasks_passed[1],
                "first_move_right_tool": s.tools.right,
                "first_moves": s.tools.total,
                "passed": {f"{t.task_id}/{t.subtask_id}": t.passed for t in s.result.tasks},
                "report": s.result.report_uri,
            }
            for s in scored
        ],
    }
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    return path
