"""PNG plots for the evaluation report, drawn with matplotlib's Agg backend (no display needed).

`score_per_checkpoint` draws the headline metric of each evaluated checkpoint in order, and
`score_vs_samples` the metric against the number of training samples of each checkpoint
(only meaningful when the checkpoints differ in dataset size; the caller decides), and
`score_lines` several named series of (samples, value) on one axis. They write
a PNG file and return its path. They read nothing and know nothing about evaluations.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def _save(figure, path: pathlib.Path) -> pathlib.Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def score_per_checkpoint(
    points: list[tuple[str, float]], metric: str, title: str, path: pathlib.Path, highlight: str = ""
) -> pathlib.Path:
    """One bar per checkpoint (label, value), in the given order; `highlight` marks the current one."""
    figure, axes = plt.subplots(figsize=(max(5.0, 0.9 * len(points) + 2), 3.6))
    labels = [label if len(label) <= 24 else label[:21] + "..." for label, _ in points]
    colors = ["#d9480f" if label == highlight else "#1c7ed6" for label, _ in points]
    bars = axes.bar(range(len(points)), [value for _, value in points], color=colors)
    for bar, (_, value) in zip(bars, points, strict=False):
        axes.annotate(
            f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
        )
    axes.set_xticks(range(len(points)), labels, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(metric)
    axes.set_ylim(0, max(100.0, max((v for _, v in points), default=0) * 1.1))
    axes.set_title(title, fontsize=10)
    return _save(figure, path)


def score_vs_samples(points: list[tuple[int, float, str]], metric: str, title: str, path: pathlib.Path) -> pathlib.Path:
    """The metric against training samples: points are (samples, value, checkpoint label)."""
    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    ordered = sorted(points)
    axes.plot([p[0] for p in ordered], [p[1] for p in ordered], marker="o", color="#1c7ed6")
    for samples, value, label in ordered:
        axes.annotate(
            label if len(label) <= 16 else label[:13] + "...",
            (samples, value),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    axes.set_xlabel("training samples")
    axes.set_ylabel(metric)
    axes.set_ylim(0, max(100.0, max((p[1] for p in points), default=0) * 1.1))
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def score_lines(lines: dict[str, list[tuple[int, float]]], metric: str, title: str, path: pathlib.Path) -> pathlib.Path:
    """One line per named series of (training samples, value) points, with the values written beside the points."""
    figure, axes = plt.subplots(figsize=(6.5, 4.0))
    for (name, points), color in zip(lines.items(), ("#1c7ed6", "#e8590c", "#2f9e44", "#862e9c"), strict=False):
        ordered = sorted(points)
        axes.plot([p[0] for p in ordered], [p[1] for p in ordered], marker="o", color=color, label=name)
        for samples, value in ordered:
            axes.annotate(
                f"{value:.1f}", (samples, value), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color
            )
    axes.set_xlabel("training samples (0: the base model)")
    axes.set_ylabel(metric)
    axes.set_ylim(0, 100.0)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3)
    return _save(figure, path)
