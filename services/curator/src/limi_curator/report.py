"""A dataset's report: a PNG with the token-length histogram and the categories, and a markdown summary.

`render_dataset_report` draws on matplotlib's Agg canvas (no display, no pyplot state), writes
`<id>.tokens.png` and `<id>.report.md` beside the dataset file, and returns both. The markdown
gives the counts, token statistics against LIMI's (13k / 42.4k / 152k), the tokenizer, the
categories covered and the curation funnel. It does not decide anything about the dataset.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from limi.dataset.v1 import dataset_pb2


@dataclasses.dataclass(frozen=True)
class RenderedReport:
    markdown: str
    png: bytes
    markdown_path: pathlib.Path
    png_path: pathlib.Path


def _png(dataset: dataset_pb2.Dataset, token_lengths: list[int]) -> bytes:
    # Figure and the Agg canvas directly, not pyplot: no global state, safe in worker threads.
    figure = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    if token_lengths:
        left.hist(token_lengths, bins=min(30, max(5, len(token_lengths))), color="#3b6ea5", edgecolor="white")
    left.set_title(f"Token length per sample (n={len(token_lengths)})")
    left.set_xlabel(f"tokens ({dataset.tokenizer})" if len(dataset.tokenizer) < 40 else "tokens")
    left.set_ylabel("samples")
    categories = sorted(dataset.stats.categories.items(), key=lambda item: (-item[1], item[0]))
    if categories:
        right.barh([name for name, _ in categories][::-1], [count for _, count in categories][::-1], color="#6a9f58")
    right.set_title(f"Categories covered ({len(categories)})")
    right.set_xlabel("samples")
    figure.suptitle(f"{dataset.name} v{dataset.version} ({dataset.id})")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _markdown(dataset: dataset_pb2.Dataset, filter_counts: dict[str, int], png_name: str) -> str:
    stats = dataset.stats
    lines = [
        f"# Dataset {dataset.name} v{dataset.version}",
        "",
        f"- id: `{dataset.id}`",
        f"- content hash: `{dataset.content_hash}`",
        f"- samples: {stats.count}",
        f"- tokens min / mean / max: {stats.tokens_min:,} / {stats.tokens_mean:,.1f} / {stats.tokens_max:,} "
        "(LIMI's 78 samples: 13k / 42.4k / 152k)",
        f"- tokenizer: {dataset.tokenizer}",
        f"- file: {dataset.storage_uri}",
        "",
        f"![token lengths and categories]({png_name})",
        "",
        "## Categories covered",
        "",
        "| category | samples |",
        "| --- | ---: |",
    ]
    for name, count in sorted(stats.categories.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"| {name} | {count} |")
    if filter_counts:
        lines += ["", "## Curation funnel", "", "| stage.result | count |", "| --- | ---: |"]
        lines += [f"| {key} | {value} |" for key, value in filter_counts.items()]
    return "\n".join(lines) + "\n"


def render_dataset_report(
    dataset: dataset_pb2.Dataset, token_lengths: list[int], filter_counts: dict[str, int], directory: pathlib.Path
) -> RenderedReport:
    directory.mkdir(parents=True, exist_ok=True)
    png_path = directory / f"{dataset.id}.tokens.png"
    markdown_path = directory / f"{dataset.id}.report.md"
    png = _png(dataset, token_lengths)
    markdown = _markdown(dataset, filter_counts, png_path.name)
    png_path.write_bytes(png)
    markdown_path.write_text(markdown, encoding="utf-8")
    return RenderedReport(markdown, png, markdown_path, png_path)
