"""Reading the AgencyBench v2 scenario descriptions in place, and the per-model result shape.

`load_v2_scenarios(root)` reads every `<Capability>/<scenario>/description.json` under the v2
folder into `V2Scenario`s: the subtasks in order, each with its full text and, where the text
has them, its `Query:`, `Deliverables:` and `Rubric:` sections (a few scenarios store a
{query, deliverables, rubric} object instead of a string; both forms are read). The rubrics are
prose; suites/agencybench-v2.toml gives executable checks for the subtasks whose rubrics a
machine can check, and the suite loader takes the query texts from here. A missing folder or a
file that does not parse raises `FailedPrecondition` naming the file and the variable to set.
It does not run anything and it does not copy the data.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import re

from limi_core.errors import FailedPrecondition, InvalidArgument

VARIABLE = "LIMI_EVALUATOR_BENCHMARKS_DIR"
HEADING = re.compile(r"^\s*\**\s*(Query|Deliverables|Rubric)\s*\**\s*:?\s*(.*)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class V2Subtask:
    id: str
    text: str
    query: str
    deliverables: str
    rubric: str


@dataclasses.dataclass(frozen=True)
class V2Scenario:
    capability: str
    scenario: str
    subtasks: tuple[V2Subtask, ...]

    @property
    def key(self) -> str:
        return f"{self.capability}/{self.scenario}"


def split_sections(text: str) -> dict[str, str]:
    """{"query": ..., "deliverables": ..., "rubric": ...} for the headings the text has."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = HEADING.match(line)
        if match and match.group(1).lower() not in sections:
            current = sections.setdefault(match.group(1).lower(), [])
            if match.group(2).strip():
                current.append(match.group(2))
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def _subtask(subtask_id: str, value: object, origin: pathlib.Path) -> V2Subtask:
    if isinstance(value, dict):
        parts = {k.lower(): str(v) for k, v in value.items()}
        text = "\n".join(
            f"{name.capitalize()}:\n{parts[name]}" for name in ("query", "deliverables", "rubric") if name in parts
        )
        return V2Subtask(
            subtask_id, text, parts.get("query", ""), parts.get("deliverables", ""), parts.get("rubric", "")
        )
    if not isinstance(value, str):
        raise FailedPrecondition(f"{origin}: {subtask_id} must be a string or an object, got {type(value).__name__}")
    sections = split_sections(value)
    return V2Subtask(
        subtask_id, value, sections.get("query", value), sections.get("deliverables", ""), sections.get("rubric", "")
    )


def read_v2_scenario(path: pathlib.Path, capability: str, scenario: str) -> V2Scenario:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        count = int(data["subtask_count"])
        subtasks = tuple(_subtask(f"subtask{i}", data[f"subtask{i}"], path) for i in range(1, count + 1))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FailedPrecondition(
            f"AgencyBench v2 description {path} cannot be read: {type(exc).__name__}: {exc}"
        ) from None
    return V2Scenario(capability, scenario, subtasks)


@functools.lru_cache(maxsize=8)
def load_v2_scenarios(root: pathlib.Path) -> tuple[V2Scenario, ...]:
    """Every scenario under `root` (the agencybench-v2 folder), sorted by capability and number.

    Raises:
        FailedPrecondition: the folder is missing or holds no description, or one does not parse.
    """
    files = sorted(root.glob("*/*/description.json")) if root.is_dir() else []
    if not files:
        raise FailedPrecondition(
            f"no AgencyBench v2 descriptions under {root}: set {VARIABLE} to the folder holding agencybench-v2/"
        )
    scenarios = [read_v2_scenario(f, f.parent.parent.name, f.parent.name) for f in files]
    return tuple(sorted(scenarios, key=lambda s: (s.capability, int(re.sub(r"\D", "", s.scenario) or 0))))


def v2_subtask_texts(root: pathlib.Path, key: str) -> list[tuple[str, str]]:
    """[(subtask id, full text)] of scenario `key` ("Backend/scenario3"), for the suite loader."""
    for scenario in load_v2_scenarios(root):
        if scenario.key == key:
            return [(s.id, s.text) for s in scenario.subtasks]
    known = ", ".join(s.key for s in load_v2_scenarios(root))
    raise InvalidArgument("agencybench_v2", f"no scenario {key!r} under {root}; known: {known}")


def per_model_result(model: str, scorer: str, max_attempts: int, subtasks: list[dict]) -> dict:
    """AgencyBench v2's per-model result: {model, scorer, max_attempts, subtasks: [{name, attempts, best_score, best_attempt}]}.

    `subtasks` items need name, attempts, best_score and best_attempt; extra keys are kept.
    """
    return {"model": model, "scorer": scorer, "max_attempts": max_attempts, "subtasks": subtasks}
