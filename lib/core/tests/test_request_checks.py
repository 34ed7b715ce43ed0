"""Request field checks and path confinement (limi_core.request_checks), without a server.

Each confinement test plants what an attacker would (`..`, a symlink out of the root, a
percent-encoded `..` in a file:// URI, a NUL byte, another host) and expects the typed error
that names the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib

import pytest
from google.protobuf import timestamp_pb2

from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2
from limi.trajectory.v1 import trajectory_pb2
from limi_core.errors import InvalidArgument, PermissionDenied
from limi_core.request_checks import (
    IDENTIFIER,
    Between,
    Each,
    Entries,
    Identifier,
    Known,
    Text,
    TimesInRange,
    Url,
    check_fields,
    confined_path,
    local_path,
)
from limi_core.settings import ServiceSettings


@pytest.fixture
def root(tmp_path) -> pathlib.Path:
    root = tmp_path / "curator" / "datasets"
    root.mkdir(parents=True)
    (root / "train.jsonl").write_text("{}\n")
    (tmp_path / "secret.txt").write_text("secret")
    return root


def test_a_path_inside_the_root_resolves(root):
    assert confined_path("dataset_uri", str(root / "train.jsonl"), [root], "LIMI_X") == root / "train.jsonl"
    assert confined_path("dataset_uri", (root / "train.jsonl").as_uri(), [root], "LIMI_X") == root / "train.jsonl"
    assert (
        confined_path("dataset_uri", f"file://localhost{root}/sub/../train.jsonl", [root], "LIMI_X")
        == root / "train.jsonl"
    )


@pytest.mark.parametrize(
    "escape",
    [
        "{root}/../../secret.txt",
        "file://{root}/%2e%2e/%2e%2e/secret.txt",
        "/etc/passwd",
        "file:///etc/passwd",
        "{root}/link-out",
        "{root}/link-out/../secret.txt",
        "{root}",  # the root's parent folder is not the root: {root}-sibling below
        "{root}-sibling/x",
    ],
)
def test_a_path_that_leaves_the_root_is_permission_denied(root, escape):
    (root / "link-out").symlink_to(root.parent.parent)
    value = escape.format(root=root)
    roots = [root / "train.jsonl"] if escape == "{root}" else [root]
    with pytest.raises(PermissionDenied) as caught:
        confined_path("dataset_uri", value, roots, "LIMI_TRAINER_DATASET_ROOTS")
    assert str(caught.value).startswith("dataset_uri: ") and "LIMI_TRAINER_DATASET_ROOTS" in str(caught.value)


@pytest.mark.parametrize(
    "value, reason",
    [
        ("../../etc/passwd", "must be an absolute path"),
        ("train.jsonl", "must be an absolute path"),
        ("/tmp/a\x00b", "must not contain NUL"),
        ("file:///tmp/a%00b", "must not contain NUL"),
        ("s3://bucket/train.jsonl", "got scheme 's3'"),
        ("file://evil.example/etc/passwd", "must be a local file:// URI"),
        ("/" + "a" * 5000, "at most 4096 characters"),
        ("{root}/" + "n" * 256, "a file name longer than 255 bytes"),
    ],
)
def test_a_value_that_is_no_absolute_local_path_is_invalid(root, value, reason):
    with pytest.raises(InvalidArgument) as caught:
        confined_path("dataset_uri", value.format(root=root), [root], "LIMI_X")
    assert caught.value.field == "dataset_uri" and reason in caught.value.reason


def test_the_message_quotes_a_long_path_only_in_part(root):
    with pytest.raises(PermissionDenied) as caught:
        confined_path("checkpoint_uri", "/" + "/".join(["x" * 100] * 30), [root], "LIMI_X")
    assert len(str(caught.value)) < 400


def test_local_path_keeps_the_path_as_written():
    assert local_path("f", "file:///a/b%20c") == pathlib.Path("/a/b c")


def test_rules_name_the_field_and_quote_values_short():
    with pytest.raises(InvalidArgument, match=r"^id: must be at most 512 characters, got 100000$"):
        IDENTIFIER("id", "x" * 100_000)
    with pytest.raises(InvalidArgument, match="^id: must not contain control characters"):
        IDENTIFIER("id", "a\nb")
    with pytest.raises(InvalidArgument, match="^id: is required$"):
        Identifier(required=True)("id", "")
    with pytest.raises(InvalidArgument, match="^k: must be a number between 0 and 1, got nan$"):
        Between(0, 1)("k", math.nan)
    with pytest.raises(InvalidArgument, match="^step: must be between 0 and 10, got -1$"):
        Between(0, 10)("step", -1)
    with pytest.raises(
        InvalidArgument,
        match="^source: must be one of QUERY_SOURCE_UNSPECIFIED, QUERY_SOURCE_REAL, QUERY_SOURCE_SYNTHETIC, got 99$",
    ):
        Known(query_pb2.QuerySource)("source", 99)
    with pytest.raises(InvalidArgument, match="^role: must be one of ROLE_SYSTEM"):
        Known(trajectory_pb2.Role, unspecified=False)("role", 0)
    with pytest.raises(InvalidArgument, match=r"^task_ids\[1\]: must not contain control"):
        Each(IDENTIFIER)("task_ids", ["a", "b\x00"])
    with pytest.raises(InvalidArgument, match="^task_ids: must hold at most 2 items, got 3$"):
        Each(IDENTIFIER, max_items=2)("task_ids", ["a", "b", "c"])
    with pytest.raises(InvalidArgument, match=r"^hyperparameters.lr: must be at most 4 characters"):
        Entries(value=Identifier(4))("hyperparameters", {"lr": "0.00001"})
    with pytest.raises(InvalidArgument, match="^text: must not contain NUL"):
        Text(100)("text", "a\x00")
    with pytest.raises(InvalidArgument, match="^endpoint: must be an http"):
        Url()("endpoint", "file:///etc/passwd")
    with pytest.raises(InvalidArgument, match="^endpoint: must be an http"):
        Url()("endpoint", "http://[::1")
    Url()("endpoint", "http://127.0.0.1:8000/v1")


def test_check_fields_walks_submessages_and_skips_unset_ones():
    rules = {"sampling.max_tokens": Between(0, 100), "limits.max_turns": Between(0, 10), "query.id": IDENTIFIER}
    check_fields(rollout_pb2.RunEpisodeRequest(), rules)
    request = rollout_pb2.RunEpisodeRequest(sampling=trajectory_pb2.SamplingParams(max_tokens=-1))
    with pytest.raises(InvalidArgument, match=r"^sampling.max_tokens: must be between 0 and 100, got -1$"):
        check_fields(request, rules)


def test_times_out_of_json_range_are_named_down_to_the_nested_field():
    trajectory = trajectory_pb2.Trajectory()
    trajectory.steps.add().started_at.CopyFrom(timestamp_pb2.Timestamp(seconds=2**63 - 1))
    with pytest.raises(InvalidArgument, match=r"^trajectory.steps\[0\].started_at: must be a time between"):
        TimesInRange()("trajectory", trajectory)
    trajectory.steps[0].started_at.seconds = 0
    trajectory.steps[0].duration.nanos = -1
    trajectory.steps[0].duration.seconds = 1
    with pytest.raises(InvalidArgument, match=r"^trajectory.steps\[0\].duration: must be within"):
        TimesInRange()("trajectory", trajectory)


@dataclasses.dataclass(frozen=True)
class TrainerLike(ServiceSettings):
    PREFIX = "LIMI_TRAINER_"


def test_other_services_data_dirs_follow_the_shared_layout(tmp_path):
    assert TrainerLike(data_dir=tmp_path / "trainer").data_dir_of("curator") == tmp_path / "curator"
    # One folder for every service (the default without `limi up`): the siblings are that folder.
    assert TrainerLike(data_dir=tmp_path / "limi").data_dir_of("curator") == tmp_path / "limi"


def test_roots_are_compared_after_resolving_them_too(tmp_path, root):
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    assert confined_path("dataset_uri", str(root / "train.jsonl"), [alias], "LIMI_X") == root / "train.jsonl"
