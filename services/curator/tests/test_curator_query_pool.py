"""The query pool: JSONL and CSV import with errors naming line and field, listing, versioned query sets."""

from __future__ import annotations

import json

import pytest

from limi.query.v1 import query_pb2
from limi_core.errors import InvalidArgument, NotFound
from limi_curator.curator import Curator
from limi_curator.query_import import MAX_WORKSPACE_BYTES, parse_csv, parse_jsonl

REAL = query_pb2.QUERY_SOURCE_REAL

QUERIES_JSONL = (
    "\n".join(
        json.dumps(row)
        for row in [
            {
                "text": "Build a C++ console inventory tracker that persists items to a CSV file and supports search by SKU.",
                "category": "backend",
                "author": "alice",
            },
            {
                "query": "Our nightly ETL job drops rows with non-ASCII customer names; find why and fix the pipeline.",
                "category": "data_processing",
                "labels": {"difficulty": "medium"},
            },
            {
                "text": "Profile the image thumbnailer and make it at least twice as fast on 4k JPEGs.",
                "task_category": "2-4.ui_optimization",
                "id": "thumbs-speed",
            },
            {
                "test_query": "Add a readiness probe to the Helm chart of the billing service.",
                "repo_url": "https://github.com/acme/billing",
                "pr_id": "412",
                "modified_files": ["charts/billing/templates/deployment.yaml"],
                "reasoning": "Deployment work.",
                "patch": "--- a/x\n+++ b/x\n+secret solution",
            },
        ]
    )
    + "\n"
)

QUERIES_CSV = (
    "text,category,author,team\n"
    '"Write a Python CLI that mirrors a directory to S3, skipping unchanged files by ETag.",backend,bob,storage\n'
    '"Investigate why the React settings page re-renders 40 times on load, and fix it.",frontend,carol,web\n'
)


@pytest.fixture
def curator(settings):
    curator = Curator(settings)
    yield curator
    curator.close()


def test_jsonl_rows_become_queries_with_categories_labels_and_provenance():
    queries = parse_jsonl(QUERIES_JSONL.encode(), "queries.jsonl", REAL)
    assert [q.category for q in queries] == [
        query_pb2.QUERY_CATEGORY_BACKEND,
        query_pb2.QUERY_CATEGORY_DATA_PROCESSING,
        query_pb2.QUERY_CATEGORY_FRONTEND,
        query_pb2.QUERY_CATEGORY_UNSPECIFIED,
    ]
    assert queries[0].id.startswith("q-") and len(queries[0].content_hash) == 64
    assert queries[1].labels["difficulty"] == "medium"
    assert queries[2].id == "thumbs-speed"
    assert queries[3].provenance.pull_request == 412 and queries[3].provenance.url == "https://github.com/acme/billing"
    assert queries[3].labels["modified_files"] == "charts/billing/templates/deployment.yaml"
    # The patch is the solution: it never travels with the query.
    assert "secret solution" not in str(queries[3])
    assert (queries[0].provenance.origin_file, queries[0].provenance.origin_line) == ("queries.jsonl", 1)


def test_workspace_files_travel_with_the_query_and_count_in_its_hash():
    text = "Build a C++ console inventory tracker that persists items to a CSV file and supports search by SKU."
    rows = [
        {"text": text},
        {"text": text, "files": {"src/main.cpp": "int main() {}\n", "README.md": "# inventory\n"}},
        {"text": text, "workspace_files": {"src/main.cpp": "int main() { return 1; }\n", "README.md": "# inventory\n"}},
        {"text": text, "files": {}},
    ]
    plain, seeded, other, empty = parse_jsonl(
        "\n".join(json.dumps(row) for row in rows).encode(), "queries.jsonl", REAL
    )
    # Without files the hash and id are the text's alone, exactly as before workspace files existed.
    assert (
        plain.id == empty.id == "q-8ef9641c7edc1a48"
        and plain.content_hash == empty.content_hash
        and not plain.workspace_files
    )
    assert [(f.path, f.content, f.mode) for f in seeded.workspace_files] == [
        ("README.md", b"# inventory\n", 0),
        ("src/main.cpp", b"int main() {}\n", 0),
    ]
    assert len({plain.content_hash, seeded.content_hash, other.content_hash}) == 3
    assert len({plain.id, seeded.id, other.id}) == 3 and seeded.id == "q-" + seeded.content_hash[:16]


def test_csv_rows_become_queries_and_extra_columns_become_labels():
    queries = parse_csv(QUERIES_CSV.encode(), "queries.csv", REAL)
    assert [q.category for q in queries] == [query_pb2.QUERY_CATEGORY_BACKEND, query_pb2.QUERY_CATEGORY_FRONTEND]
    assert queries[1].labels["team"] == "web" and queries[1].provenance.author == "carol"
    assert queries[1].provenance.origin_line == 3


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"text": "fine query about caching"}\n{"text": "broken\n',
            "queries.jsonl line 2 field (line): is not valid JSON",
        ),
        ('{"text": "ok"}\n{"category": "backend"}\n', "queries.jsonl line 2 field text: is missing"),
        (
            '{"text": "Refactor the scheduler", "category": "frontnd"}\n',
            "queries.jsonl line 1 field category: unknown category 'frontnd'",
        ),
        ('{"text": "   "}\n', "queries.jsonl line 1 field text: must not be empty"),
        ('{"text": "Refactor", "txt": "typo"}\n', "queries.jsonl line 1 field txt: is not a known field"),
        ('{"text": "Refactor", "source": "scraped"}\n', "queries.jsonl line 1 field source: unknown source 'scraped'"),
        (
            '{"text": "Refactor", "pull_request": "12a"}\n',
            "queries.jsonl line 1 field pull_request: must be a pull request number",
        ),
        ('["not", "an", "object"]\n', "queries.jsonl line 1 field (line): must be a JSON object"),
        ("\n\n", "queries.jsonl: holds no queries"),
        (
            '{"text": "Fix it", "files": ["a.py"]}\n',
            "queries.jsonl line 1 field files: must be an object of relative path -> text content",
        ),
        (
            '{"text": "Fix it", "files": {"a.py": 3}}\n',
            "queries.jsonl line 1 field files: must be an object of relative path -> text content",
        ),
        (
            '{"text": "Fix it", "workspace_files": {"/etc/passwd": "x"}}\n',
            "queries.jsonl line 1 field workspace_files: path '/etc/passwd' must be relative",
        ),
        (
            '{"text": "Fix it", "files": {"src/../../x": "x"}}\n',
            "queries.jsonl line 1 field files: path 'src/../../x' must be relative",
        ),
        ('{"text": "Fix it", "files": {"": "x"}}\n', "queries.jsonl line 1 field files: path '' must be relative"),
        (
            '{"text": "Fix it", "files": {"src": "x", "src/a.py": "y"}}\n',
            "queries.jsonl line 1 field files: path 'src' is a file but 'src/a.py'",
        ),
        (
            '{"text": "Fix it", "files": {}, "workspace_files": {}}\n',
            "queries.jsonl line 1 field workspace_files: repeats files",
        ),
        (
            '{"text": "Fix it", "files": {"a.bin": "' + "x" * (MAX_WORKSPACE_BYTES + 1) + '"}}\n',
            f"queries.jsonl line 1 field files: holds {MAX_WORKSPACE_BYTES + 1} bytes of content; at most {MAX_WORKSPACE_BYTES}",
        ),
    ],
)
def test_broken_jsonl_is_rejected_naming_line_and_field(content, message):
    with pytest.raises(InvalidArgument) as caught:
        parse_jsonl(content.encode(), "queries.jsonl", REAL)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "prompt,category\nhello,backend\n",
            "queries.csv line 1 field text: the header has no text column (columns: prompt, category)",
        ),
        ('text,category,author\n"Speed up the importer",optimization\n', "queries.csv line 2 field author: is missing"),
        (
            'text,category\n"Speed up the importer",optimization,extra\n',
            "queries.csv line 2 field (row): has 3 cells for 2 columns",
        ),
        ('text,category\n"",backend\n', "queries.csv line 2 field text: must not be empty"),
        ('text,files\n"Fix it",a.py\n', "queries.csv line 2 field files: is not a CSV column"),
    ],
)
def test_broken_csv_is_rejected_naming_line_and_field(content, message):
    with pytest.raises(InvalidArgument) as caught:
        parse_csv(content.encode(), "queries.csv", REAL)
    assert str(caught.value).startswith(message), str(caught.value)


def test_not_utf8_is_named():
    with pytest.raises(InvalidArgument, match=r"^queries.csv: is not UTF-8 text \(bad byte at offset 5\)"):
        parse_csv(b"text\n\xff\xfe bad", "queries.csv", REAL)


def test_import_counts_duplicates_and_refuses_a_reused_id_with_other_text(curator):
    ids, added = curator.import_queries("jsonl", QUERIES_JSONL.encode(), "queries.jsonl", REAL)
    assert len(ids) == len(added) == 4
    again, added_again = curator.import_queries("jsonl", QUERIES_JSONL.encode(), "queries.jsonl", REAL)
    assert again == ids and added_again == []
    with pytest.raises(
        InvalidArgument, match=r"^more.jsonl line 1 field id: query thumbs-speed already exists with different text"
    ):
        curator.import_queries(
            "jsonl", b'{"id": "thumbs-speed", "text": "Something else entirely"}\n', "more.jsonl", REAL
        )
    # All or nothing: the failed import stored nothing.
    assert len(curator.pool.all_active()) == 4


def test_the_same_text_with_other_files_is_another_query(curator):
    text = "Make the importer skip blank lines."
    rows = [
        {"text": text},
        {"text": text, "files": {"importer.py": "def load(lines): ...\n"}},
        {"text": text, "files": {"importer.py": "def load(lines): ...\n"}},
    ]
    ids, added = curator.import_queries(
        "jsonl", "\n".join(json.dumps(row) for row in rows).encode(), "queries.jsonl", REAL
    )
    assert len(added) == 2 and ids[1] == ids[2] != ids[0]
    assert [f.path for f in curator.pool.get(ids[1]).workspace_files] == ["importer.py"]
    with pytest.raises(
        InvalidArgument,
        match=r"^more.jsonl line 1 field id: query .* already exists with different text or workspace files",
    ):
        curator.import_queries("jsonl", json.dumps({"id": ids[1], "text": text}).encode(), "more.jsonl", REAL)


def test_list_filters_by_source_category_status_and_pages(curator):
    curator.import_queries("jsonl", QUERIES_JSONL.encode(), "queries.jsonl", REAL)
    curator.import_queries("csv", QUERIES_CSV.encode(), "queries.csv", query_pb2.QUERY_SOURCE_SYNTHETIC)
    backend, _ = curator.pool.list(category=query_pb2.QUERY_CATEGORY_BACKEND)
    assert len(backend) == 2
    synthetic, _ = curator.pool.list(source=query_pb2.QUERY_SOURCE_SYNTHETIC)
    assert [q.provenance.origin_file for q, _status, _reason in synthetic] == ["queries.csv", "queries.csv"]
    first, token = curator.pool.list(page_size=4)
    second, last_token = curator.pool.list(page_size=4, page_token=token)
    assert len(first) == 4 and len(second) == 2 and last_token == ""
    assert {q.id for q, _, _ in first}.isdisjoint({q.id for q, _, _ in second})
    pending, _ = curator.pool.list(status=query_pb2.QUERY_STATUS_PENDING)
    assert len(pending) == 6
    with pytest.raises(InvalidArgument, match="^page_token: "):
        curator.pool.list(page_token="abc")


def test_query_sets_are_content_hashed_versioned_and_immutable(curator):
    ids, _ = curator.import_queries("jsonl", QUERIES_JSONL.encode(), "queries.jsonl", REAL)
    first, new = curator.pool.publish_set("agency-v1", ids[:2])
    assert new and first.version == 1 and first.id == f"agency-v1-{first.content_hash[:12]}"
    same, new_again = curator.pool.publish_set("agency-v1", list(reversed(ids[:2])))
    assert not new_again and same == first
    second, _ = curator.pool.publish_set("agency-v1", ids[:3])
    assert second.version == 2 and second.id != first.id
    assert curator.pool.get_set(first.id).query_ids == first.query_ids
    everything, _ = curator.pool.publish_set("all-real", [], source=REAL)
    assert sorted(everything.query_ids) == sorted(ids)
    assert [s.version for s in curator.pool.list_sets("agency-v1")] == [2, 1]
    with pytest.raises(InvalidArgument, match=r"^query_ids\[1\]: no query 'nope' in the pool"):
        curator.pool.publish_set("agency-v1", [ids[0], "nope"])
    with pytest.raises(InvalidArgument, match="^name: "):
        curator.pool.publish_set("bad name!", ids)
    with pytest.raises(NotFound):
        curator.pool.get_set("missing-set")


def test_dropped_queries_cannot_join_a_set(curator):
    ids, _ = curator.import_queries("jsonl", QUERIES_JSONL.encode(), "queries.jsonl", REAL)
    curator.pool.mark_dropped({ids[0]: "near_duplicate: q-x (0.91)"})
    with pytest.raises(InvalidArgument, match=r"^query_ids\[0\]: query .* was dropped"):
        curator.pool.publish_set("s", [ids[0]])
    page, _ = curator.pool.list(status=query_pb2.QUERY_STATUS_DROPPED)
    assert [(q.id, reason) for q, _status, reason in page] == [(ids[0], "near_duplicate: q-x (0.91)")]
