"""Counting what each step of a pipeline keeps and drops, and why.

A `Funnel` records, per named stage in order, how many items it kept and how many it dropped
for each reason, plus one `Rejection` per dropped item (which item, which stage, why, a short
detail). Synthesis and curation both report through it; `flat_counts` gives the map form
("stars.kept", "stars.dropped.below_min_stars"). It decides nothing itself.
"""

from __future__ import annotations

import dataclasses
from collections import Counter


@dataclasses.dataclass(frozen=True)
class Rejection:
    item: str
    stage: str
    reason: str
    detail: str = ""


@dataclasses.dataclass
class Stage:
    name: str
    kept: int = 0
    dropped: Counter = dataclasses.field(default_factory=Counter)


class Funnel:
    def __init__(self) -> None:
        self.stages: list[Stage] = []
        self.rejections: list[Rejection] = []

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        stage = Stage(name)
        self.stages.append(stage)
        return stage

    def keep(self, stage: str, count: int = 1) -> None:
        self.stage(stage).kept += count

    def drop(self, stage: str, item: str, reason: str, detail: str = "") -> None:
        self.stage(stage).dropped[reason] += 1
        self.rejections.append(Rejection(item, stage, reason, detail))

    def flat_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for stage in self.stages:
            counts[f"{stage.name}.kept"] = stage.kept
            for reason, count in sorted(stage.dropped.items()):
                counts[f"{stage.name}.dropped.{reason}"] = count
        return counts

    def markdown_table(self) -> str:
        lines = ["| stage | kept | dropped (reason: count) |", "| --- | ---: | --- |"]
        for stage in self.stages:
            dropped = ", ".join(f"{reason}: {count}" for reason, count in sorted(stage.dropped.items())) or "-"
            lines.append(f"| {stage.name} | {stage.kept} | {dropped} |")
        return "\n".join(lines)
