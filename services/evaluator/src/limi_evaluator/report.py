"""The HTML report of one evaluation, with its trajectories, plots and machine-readable results.

`write_report(folder, result, trajectories, history, ...)` writes into `folder`:
`index.html` (summary, aggregate metrics, plots, one row per subtask or problem with every
round's grade, unmet rubric items and a link to that round's trajectory, the leaderboard of the
benchmark, and the metric definitions), `trajectories/<task>__<subtask>__r<round>.json` (each
round's trajectory as a LIMI JSON sample, lossless), `score_per_checkpoint.png` and, when the
evaluated checkpoints differ in training-set size, `score_vs_samples.png`, `result.json` (the
`EvalResult`) and `agencybench_v2.json` (AgencyBench v2's per-model result shape). The page is
static and self-contained apart from those relative files (one line of script only marks, for
checks, whether the plots loaded). It computes no scores.
"""

from __future__ import annotations

import html
import json
import pathlib
import re

from google.protobuf import json_format

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core import limi_format
from limi_evaluator import plots, scores
from limi_evaluator.store import LeaderboardRow

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#212529;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #dee2e6;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}
th{background:#f1f3f5}tr.passed td.outcome{color:#2b8a3e;font-weight:600}tr.failed td.outcome{color:#c92a2a;font-weight:600}
li.round.passed>span.grade{color:#2b8a3e}li.round.failed>span.grade{color:#c92a2a}ul.failed-items{font-size:12px;color:#495057;margin:2px 0}
figure{display:inline-block;margin:0 16px 16px 0}img{border:1px solid #dee2e6}code{font-size:13px}
"""
DEFINITIONS = """<dl id="definitions">
<dt>FTFC</dt><dd>100 &times; mean first-round rubric grade / 10: requirements met in the first round.</dd>
<dt>SR@R</dt><dd>100 &times; share of subtasks passed within R rounds (= Pass@R).</dd>
<dt>RC@R</dt><dd>100 &times; mean over passed subtasks of (R &minus; rounds used) / (R &minus; 1): remaining chances.</dd>
<dt>Avg</dt><dd>(FTFC + SR@R + RC@R) / 3.</dd>
<dt>S_avg</dt><dd>100 &times; mean best rubric grade / 10. <b>Att</b>: mean rounds used. <b>Pass@k</b>: share passed within k rounds.</dd>
<dt>pass@k</dt><dd>Code benchmarks: mean over problems of the unbiased estimator 1 &minus; C(n&minus;c, k) / C(n, k).</dd>
</dl>"""


def folder_name(evaluation_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", evaluation_id).strip("_") or "evaluation"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _write_trajectories(folder: pathlib.Path, trajectories: dict[str, tp.Trajectory]) -> dict[str, str]:
    target = folder / "trajectories"
    target.mkdir(parents=True, exist_ok=True)
    links = {}
    for key, trajectory in trajectories.items():
        name = f"{_safe(key)}.json"
        (target / name).write_text(
            limi_format.dumps_sample(limi_format.trajectory_to_limi(trajectory)) + "\n", encoding="utf-8"
        )
        links[key] = f"trajectories/{name}"
    return links


def _plots(
    folder: pathlib.Path, result: ev.EvalResult, history: list[LeaderboardRow], metric: str, dataset_size: int | None
) -> tuple[list[str], str]:
    rows = [
        (r.checkpoint_id, r.aggregate.get(metric, 0.0), r.dataset_size) for r in history if r.evaluation_id != result.id
    ]
    rows.append((result.checkpoint_id, result.aggregate.get(metric, 0.0), dataset_size))
    made = []
    if metric:
        plots.score_per_checkpoint(
            [(c, v) for c, v, _ in rows],
            metric,
            f"{result.benchmark}: {metric} per checkpoint",
            folder / "score_per_checkpoint.png",
            highlight=result.checkpoint_id,
        )
        made.append("score_per_checkpoint.png")
    sized = [(size, value, checkpoint) for checkpoint, value, size in rows if size is not None]
    if metric and len({size for size, _, _ in sized}) >= 2:
        plots.score_vs_samples(
            sized, metric, f"{result.benchmark}: {metric} vs training samples", folder / "score_vs_samples.png"
        )
        made.append("score_vs_samples.png")
        note = ""
    else:
        note = "The evaluated checkpoints do not differ in training-set size yet, so there is no score-versus-samples plot."
    return made, note


def _round_items(task: ev.TaskResult, links: dict[str, str], code: bool) -> str:
    items = []
    for r in task.rounds:
        state = "passed" if r.passed else "failed"
        label = f"sample {r.round}" if code else f"round {r.round}"
        grade = ("pass" if r.passed else "fail") if code else f"{r.score:g}/10"
        link = (
            f' &middot; <a class="trajectory" href="{_e(links[r.trajectory_id])}">trajectory</a>'
            if r.trajectory_id in links
            else ""
        )
        failed = "".join(f"<li>{_e(item)}</li>" for item in r.failed_items)
        items.append(
            f'<li class="round {state}">{label}: <span class="grade">{_e(grade)}</span>{link}'
            + (f'<ul class="failed-items">{failed}</ul>' if failed else "")
            + "</li>"
        )
    return f'<ol class="rounds">{"".join(items)}</ol>'


def _task_rows(result: ev.EvalResult, links: dict[str, str]) -> str:
    code = all(not t.subtask_id for t in result.tasks) and any("n" in t.metrics for t in result.tasks)
    head = (
        "<tr><th>problem</th><th>passed samples</th><th>outcome</th><th>samples</th></tr>"
        if code
        else "<tr><th>task</th><th>subtask</th><th>best grade</th><th>outcome</th><th>rounds used</th><th>rounds</th></tr>"
    )
    rows = []
    for t in result.tasks:
        state = "passed" if t.passed else "failed"
        if code:
            cells = f"<td>{_e(t.task_id)}</td><td>{int(t.metrics['c'])}/{int(t.metrics['n'])}</td>"
        else:
            cells = f"<td>{_e(t.task_id)}</td><td>{_e(t.subtask_id)}</td><td>{t.score:g}/10</td>"
        rows.append(
            f'<tr class="task-row {state}" data-task="{_e(t.task_id)}" data-subtask="{_e(t.subtask_id)}">{cells}'
            f'<td class="outcome">{state}</td>'
            + ("" if code else f"<td>{t.attempts}</td>")
            + f"<td>{_round_items(t, links, code)}</td></tr>"
        )
    return f'<table id="tasks"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _leaderboard(
    result: ev.EvalResult, history: list[LeaderboardRow], metric: str, dataset_size: int | None, step: int | None
) -> str:
    rows = [
        (r.checkpoint_id, r.dataset_size, r.step, r.aggregate, r.report_uri)
        for r in history
        if r.evaluation_id != result.id
    ]
    rows.append((result.checkpoint_id, dataset_size, step, dict(result.aggregate), "index.html"))
    keys = [metric] + [k for k in ("FTFC", "S_avg", "pass@1") if k != metric and k in result.aggregate]
    head = (
        "<tr><th>checkpoint</th><th>training samples</th><th>step</th>"
        + "".join(f"<th>{_e(k)}</th>" for k in keys)
        + "<th>report</th></tr>"
    )
    body = "".join(
        f'<tr class="{"current" if checkpoint == result.checkpoint_id else ""}"><td>{_e(checkpoint)}</td><td>{"" if size is None else size}</td>'
        f"<td>{'' if st is None else st}</td>"
        + "".join(f"<td>{aggregate.get(k, 0.0):.1f}</td>" for k in keys)
        + (f'<td><a href="{_e(uri)}">report</a></td>' if uri else "<td></td>")
        + "</tr>"
        for checkpoint, size, st, aggregate, uri in rows
    )
    return f'<table id="leaderboard"><thead>{head}</thead><tbody>{body}</tbody></table>'


def write_report(
    folder: pathlib.Path,
    result: ev.EvalResult,
    trajectories: dict[str, tp.Trajectory],
    history: list[LeaderboardRow],
    *,
    per_model: dict,
    dataset_size: int | None = None,
    step: int | None = None,
) -> pathlib.Path:
    """Write the report folder; returns the path of index.html."""
    folder.mkdir(parents=True, exist_ok=True)
    links = _write_trajectories(folder, trajectories)
    metric = scores.primary_metric(result.aggregate)
    made, note = _plots(folder, result, history, metric, dataset_size)
    (folder / "result.json").write_text(
        json_format.MessageToJson(result, preserving_proto_field_name=True) + "\n", encoding="utf-8"
    )
    (folder / "agencybench_v2.json").write_text(json.dumps(per_model, indent=2) + "\n", encoding="utf-8")
    aggregate = "".join(
        f'<tr data-metric="{_e(k)}"><td>{_e(k)}</td><td>{v:.2f}</td></tr>' for k, v in sorted(result.aggregate.items())
    )
    figures = "".join(
        f'<figure><img id="plot-{name.removesuffix(".png").replace("_", "-")}" src="{name}" alt="{_e(name)}"></figure>'
        for name in made
    )
    started = result.started_at.ToDatetime().isoformat(timespec="seconds") + "Z"
    finished = result.finished_at.ToDatetime().isoformat(timespec="seconds") + "Z"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>limi evaluation: {_e(result.benchmark)} on {_e(result.checkpoint_id)}</title>
<style>{STYLE}</style></head><body>
<h1 id="title">{_e(result.benchmark)} on {_e(result.checkpoint_id)}</h1>
<table id="summary">
<tr><th>evaluation</th><td>{_e(result.id)}</td></tr><tr><th>policy</th><td>{_e(result.policy_endpoint)}</td></tr>
<tr><th>started</th><td>{started}</td></tr><tr><th>finished</th><td>{finished}</td></tr>
<tr><th>training samples</th><td>{"" if dataset_size is None else dataset_size}</td></tr><tr><th>step</th><td>{"" if step is None else step}</td></tr>
<tr><th>files</th><td><a href="result.json">result.json</a> &middot; <a href="agencybench_v2.json">agencybench_v2.json</a></td></tr>
</table>
<h2>Aggregate</h2><p>Headline metric: <b id="headline" data-metric="{_e(metric)}">{_e(metric)} = {result.aggregate.get(metric, 0.0):.2f}</b></p>
<table id="aggregate"><thead><tr><th>metric</th><th>value</th></tr></thead><tbody>{aggregate}</tbody></table>
<h2>Plots</h2><div id="plots">{figures}</div>{f'<p id="plot-note">{_e(note)}</p>' if note else ""}
<h2>Tasks</h2>{_task_rows(result, links)}
<h2>Leaderboard</h2>{_leaderboard(result, history, metric, dataset_size, step)}
<h2>Definitions</h2>{DEFINITIONS}
<script>window.addEventListener("load", () => {{ document.body.dataset.imagesLoaded =
  String([...document.images].every((image) => image.complete && image.naturalWidth > 0)); }});</script>
</body></html>
"""
    path = folder / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
