"""Read a LIMI JSONL dataset, pin it for the run, and turn its samples into rendered training samples.

A dataset is the curator's LIMI-format JSONL at a `file://` URI (or a plain path); one line per
sample. `snapshot` copies it into the run directory once and records its sha256, so a resumed
run trains on exactly the bytes it started with. `prepare_samples` renders every line through
the chat template (rendering.py), drops samples longer than the token limit (as LIMI's data
preparation does) and either fails on or skips ambiguous renderings; every dropped sample is
returned with its reason. Sample identity is the line index; trajectory ids are lineage. It
does not fetch from object stores (s3:// is refused with a clear error) and does not decide
the data order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
import urllib.parse

from limi_core import limi_format
from limi_core.errors import InvalidArgument
from limi_trainer.rendering import AmbiguousRendering, RenderedSample, render_sample

SNAPSHOT_NAME = "dataset.jsonl"


@dataclasses.dataclass(frozen=True)
class DatasetInput:
    """Where a run's data comes from, with the lineage the curator published."""

    uri: str
    dataset_id: str = ""
    content_hash: str = ""
    trajectory_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TrainingSample:
    index: int
    trajectory_id: str
    rendered: RenderedSample


@dataclasses.dataclass(frozen=True)
class DroppedSample:
    index: int
    trajectory_id: str
    field: str
    reason: str


def local_path(uri: str) -> pathlib.Path:
    """The local file behind a `file://` URI or a plain path.

    Raises:
        InvalidArgument: Another scheme (`dataset_uri`).
    """
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return pathlib.Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path (or a Windows drive letter)
        return pathlib.Path(uri).expanduser()
    raise InvalidArgument(
        "dataset_uri", f"scheme {parsed.scheme!r} is not supported; the trainer reads file:// datasets"
    )


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(source: DatasetInput, run_dir: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Copy the dataset into the run directory once; return the copy and its sha256.

    Raises:
        InvalidArgument: The dataset file does not exist (`dataset_uri`).
    """
    target = run_dir / SNAPSHOT_NAME
    if target.exists():
        return target, sha256_file(target)
    path = local_path(source.uri)
    if not path.is_file():
        raise InvalidArgument("dataset_uri", f"{source.uri} is not a readable file")
    staging = run_dir / f".{SNAPSHOT_NAME}.tmp"
    shutil.copyfile(path, staging)
    with open(staging, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, target)
    return target, sha256_file(target)


def read_samples(path: pathlib.Path) -> list[dict]:
    """Every non-empty line of a LIMI JSONL file, parsed.

    Raises:
        InvalidLimiSample: A line is not a JSON object (`field` is `<file>:<line>`).
    """
    samples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                samples.append(limi_format.loads_sample(line, origin=f"{path.name}:{number}"))
    if not samples:
        raise InvalidArgument("dataset_uri", f"{path.name} holds no samples")
    return samples


def trajectory_ids(samples: list[dict], source: DatasetInput) -> list[str]:
    """Each sample's trajectory id: from its `limi` metadata, else the dataset's list, else its line."""
    listed = list(source.trajectory_ids) if len(source.trajectory_ids) == len(samples) else []
    ids = []
    for index, sample in enumerate(samples):
        meta = sample.get("limi")
        embedded = (
            meta.get("trajectory", {}).get("id")
            if isinstance(meta, dict) and isinstance(meta.get("trajectory"), dict)
            else None
        )
        ids.append(embedded or (listed[index] if listed else f"line-{index}"))
    return ids


def prepare_samples(
    tokenizer, samples: list[dict], ids: list[str], *, stop_tokens: tuple[str, ...], max_tokens: int, on_ambiguous: str
) -> tuple[list[TrainingSample], list[DroppedSample]]:
    """Render every sample; drop the over-long ones and (when `on_ambiguous == "skip"`) the ambiguous.

    Raises:
        AmbiguousRendering: A sample has no exact mask and `on_ambiguous == "fail"`; its field is
            prefixed with `samples[<index>]`.
        InvalidArgument: No sample is left to train on.
    """
    kept, dropped = [], []
    for index, (sample, trajectory_id) in enumerate(zip(samples, ids, strict=False)):
        try:
            rendered = render_sample(tokenizer, sample, stop_tokens)
        except (AmbiguousRendering, limi_format.InvalidLimiSample) as exc:
            if on_ambiguous == "fail":
                raise type(exc)(f"samples[{index}] ({trajectory_id}).{exc.field}", exc.reason) from exc
            dropped.append(DroppedSample(index, trajectory_id, exc.field, exc.reason))
            continue
        if len(rendered) > max_tokens:
            dropped.append(
                DroppedSample(
                    index,
                    trajectory_id,
                    "length",
                    f"{len(rendered)} tokens after the chat template, over the limit of {max_tokens}",
                )
            )
            continue
        kept.append(TrainingSample(index, trajectory_id, rendered))
    if not kept:
        raise InvalidArgument("dataset_uri", f"no sample is left to train on ({len(dropped)} dropped)")
    return kept, dropped
