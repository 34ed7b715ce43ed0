"""`limi curator ...`: the curator from the command line.

Every subcommand except `convert-gemini` talks to a running curator over gRPC (`--address`,
default $LIMI_CURATOR_GRPC_ADDRESS or 127.0.0.1:50051); `convert-gemini` converts files locally.
Files are read here and sent with their names, so an error names the file, the line or sample,
and the field. Exit codes (limi_core.exit_codes, the README's table): 0 success, 1 the request
failed, 2 bad usage or input (an option, a file that cannot be read or does not parse), 4 the
curator cannot be reached. `main(argv)` is the entry point (`limi-curator-cli`).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import grpc
from google.protobuf import json_format

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi_core import limi_format
from limi_core.errors import InvalidArgument
from limi_core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from limi_core.settings import DEFAULT_PORTS
from limi_curator.categories import CATEGORY_NAMES, SOURCE_NAMES, STATUS_NAMES, category_name, source_name, status_name
from limi_curator.gemini_logs import convert_gemini_log_text

CHUNK_BYTES = 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


class CommandError(Exception):
    """A failure to report in one sentence; `exit_code` is its kind (limi_core.exit_codes)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _read(path: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None


def _write(path: str, data: bytes) -> None:
    try:
        pathlib.Path(path).write_bytes(data)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None


def _print_json(message) -> None:
    print(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2))


# ------------------------------------------------------------ subcommands


def cmd_import(stub, args) -> int:
    fmt = args.format or ("csv" if args.file.lower().endswith(".csv") else "jsonl")
    request = curator_pb2.ImportQueriesRequest(
        format=curator_pb2.IMPORT_FORMAT_CSV if fmt == "csv" else curator_pb2.IMPORT_FORMAT_JSONL,
        content=_read(args.file),
        origin=os.path.basename(args.file),
        default_source=SOURCE_NAMES[args.source],
    )
    response = stub.ImportQueries(request, timeout=args.timeout)
    print(f"imported {response.imported} queries from {args.file} ({response.duplicates} already in the pool)")
    return EXIT_OK


def cmd_list(stub, args) -> int:
    request = curator_pb2.ListQueriesRequest(
        source=SOURCE_NAMES.get(args.source, 0),
        category=CATEGORY_NAMES.get(args.category, 0),
        status=STATUS_NAMES.get(args.status, 0),
        query_set_id=args.set or "",
        page_size=min(args.limit, 1000),
    )
    shown = 0
    while shown < args.limit:
        response = stub.ListQueries(request, timeout=args.timeout)
        for query in response.queries[: args.limit - shown]:
            status = status_name(response.status_by_id[query.id])
            if args.json:
                print(
                    json.dumps(
                        {
                            "id": query.id,
                            "source": source_name(query.source),
                            "category": category_name(query.category),
                            "status": status,
                            "text": query.text,
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                text = " ".join(query.text.split())
                print(
                    f"{query.id:<20} {source_name(query.source):<9} {category_name(query.category):<15} {status:<9} {text[:70]}"
                )
            shown += 1
        if not response.next_page_token:
            break
        request.page_token = response.next_page_token
    return EXIT_OK


def cmd_publish_set(stub, args) -> int:
    request = curator_pb2.PublishQuerySetRequest(
        name=args.name,
        query_ids=args.ids or [],
        source=SOURCE_NAMES.get(args.source, 0),
        category=CATEGORY_NAMES.get(args.category, 0),
        status=STATUS_NAMES.get(args.status, 0),
    )
    query_set = stub.PublishQuerySet(request, timeout=args.timeout)
    print(
        f"query set {query_set.id} (name {query_set.name}, version {query_set.version}, {len(query_set.query_ids)} queries, sha256 {query_set.content_hash})"
    )
    return EXIT_OK


def cmd_emit(stub, args) -> int:
    response = stub.EmitQuerySet(
        curator_pb2.EmitQuerySetRequest(query_set_id=args.set, episodes_per_query=args.episodes), timeout=args.timeout
    )
    print(f"emitted {response.emitted} query tasks ({response.already_emitted} had been emitted before)")
    return EXIT_OK


def cmd_synthesize(stub, args) -> int:
    filters = curator_pb2.SynthesisFilters()
    for field in ("min_stars", "max_diff_tokens", "min_changed_files", "max_changed_files"):
        if getattr(args, field) is not None:
            setattr(filters, field, getattr(args, field))
    if args.include_markdown_only:
        filters.exclude_markdown_only = False
    request = curator_pb2.SynthesizeQueriesRequest(
        pull_requests_jsonl=_read(args.file),
        origin=os.path.basename(args.file),
        endpoint=args.endpoint or "",
        model=args.model or "",
        select=args.select,
        filters=filters,
        tokenizer=args.tokenizer or "",
        add_to_pool=args.add_to_pool,
    )
    response = stub.SynthesizeQueries(request, timeout=args.timeout)
    if args.report:
        _write(args.report, response.report_markdown.encode())
    if args.json:
        _print_json(response)
        return EXIT_OK
    for stage in response.stages:
        dropped = ", ".join(f"{reason} {count}" for reason, count in sorted(stage.dropped.items()))
        print(f"{stage.name:<16} kept {stage.kept:>5}" + (f"   dropped: {dropped}" if dropped else ""))
    print(
        f"accepted {response.accepted}, selected {len(response.selected)}; endpoint calls {response.endpoint_calls}, cache hits {response.cache_hits}; "
        f"tokenizer {response.tokenizer}"
        + (f"; added {len(response.added_query_ids)} to the pool" if args.add_to_pool else "")
    )
    return EXIT_OK


def cmd_dedupe(stub, args) -> int:
    request = curator_pb2.DedupeQueriesRequest(
        jaccard_threshold=args.jaccard or 0,
        containment_threshold=args.containment or 0,
        include_benchmarks=args.benchmarks,
        apply=args.apply,
    )
    response = stub.DedupeQueries(request, timeout=args.timeout)
    print(response.report_markdown, end="")
    if not args.apply and response.dropped:
        print("(report only; run with --apply to mark them DROPPED)")
    return EXIT_OK


def cmd_curate(stub, args) -> int:
    filters = curator_pb2.CurationFilters(include_failed=args.include_failed)
    for field in ("max_failed_tool_rate", "loop_repeats", "max_empty_turns", "max_per_query"):
        if getattr(args, field) is not None:
            setattr(filters, field, getattr(args, field))
    request = curator_pb2.CurateDatasetRequest(
        name=args.name,
        size=args.size,
        tokenizer=args.tokenizer or "",
        max_tokens=args.max_tokens,
        query_set_ids=args.set or [],
        filters=filters,
    )
    dataset = stub.CurateDataset(request, timeout=args.timeout)
    stats = dataset.stats
    print(
        f"dataset {dataset.id} (name {dataset.name}, version {dataset.version}): {stats.count} samples, tokens "
        f"{stats.tokens_min}/{stats.tokens_mean:.0f}/{stats.tokens_max} (min/mean/max, {dataset.tokenizer}), "
        f"categories {dict(sorted(stats.categories.items()))}; file {dataset.storage_uri}"
    )
    return EXIT_OK


def cmd_export_limi(stub, args) -> int:
    request = curator_pb2.ExportLimiDatasetRequest(
        dataset_id=args.dataset_id, strict=args.strict, json_array=args.json_array
    )
    data = b"".join(chunk.data for chunk in stub.ExportLimiDataset(request, timeout=args.timeout))
    _write(args.out, data)
    print(f"wrote dataset {args.dataset_id} to {args.out} ({len(data)} bytes)")
    return EXIT_OK


def cmd_import_limi(stub, args) -> int:
    content = _read(args.file)

    def chunks():
        first = curator_pb2.ImportLimiDatasetChunk(
            origin=os.path.basename(args.file), publish_as=args.publish_as or "", category=args.category or ""
        )
        first.data = content[:CHUNK_BYTES]
        yield first
        for start in range(CHUNK_BYTES, len(content), CHUNK_BYTES):
            yield curator_pb2.ImportLimiDatasetChunk(data=content[start : start + CHUNK_BYTES])

    response = stub.ImportLimiDataset(chunks(), timeout=args.timeout)
    print(
        f"imported {response.imported} trajectories from {args.file} ({response.duplicates} already stored)"
        + (f"; dataset {response.dataset.id} version {response.dataset.version}" if response.dataset.id else "")
    )
    return EXIT_OK


def cmd_report(stub, args) -> int:
    report = stub.GetDatasetReport(curator_pb2.GetDatasetRequest(id=args.dataset_id), timeout=args.timeout)
    if args.out:
        out = pathlib.Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot create {out}: {exc.strerror}") from None
        png_name = pathlib.PurePosixPath(report.histogram_uri).name
        _write(str(out / png_name), report.histogram_png)
        _write(str(out / pathlib.PurePosixPath(report.markdown_uri).name), report.markdown.encode())
    print(report.markdown, end="")
    return EXIT_OK


def cmd_convert_gemini(args) -> int:
    samples = []
    for path in args.logs:
        try:
            samples.append(
                convert_gemini_log_text(
                    _read(path), os.path.basename(path), plain_system_prompt=args.plain_system_prompt
                )
            )
        except InvalidArgument as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if args.json_array:
        text = "[\n" + ",\n".join(limi_format.dumps_sample(s) for s in samples) + "\n]\n"
    else:
        text = "".join(limi_format.dumps_sample(s) + "\n" for s in samples)
    _write(args.out, text.encode("utf-8"))
    print(f"converted {len(samples)} event log(s) into {args.out}")
    return EXIT_OK


# ------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    default_address = os.environ.get("LIMI_CURATOR_GRPC_ADDRESS", f"127.0.0.1:{DEFAULT_PORTS['curator'].grpc}")
    parser = argparse.ArgumentParser(
        prog="limi curator", description="Curate queries, synthesize tasks from PRs, dedupe, and build LIMI datasets."
    )
    parser.add_argument(
        "--address", default=default_address, help=f"the curator's gRPC address (default {default_address})"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each call (default 600)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sources, categories, statuses = sorted(SOURCE_NAMES), sorted(CATEGORY_NAMES), sorted(STATUS_NAMES)

    p = commands.add_parser(
        "import",
        help="import real queries from JSONL or CSV",
        description="Import queries (fields: text, category, source, id, author, url, labels ...).",
    )
    p.add_argument(
        "file", help="a .jsonl file (one JSON object per line) or a .csv file with a header holding a 'text' column"
    )
    p.add_argument("--format", choices=("jsonl", "csv"), help="file format (default: from the file name)")
    p.add_argument("--source", choices=sources, default="real", help="source of rows that name none (default real)")
    p.set_defaults(handler=cmd_import)

    p = commands.add_parser(
        "list",
        help="list queries in the pool",
        description="List queries, oldest first, filtered by source, category, status or set.",
    )
    p.add_argument("--source", choices=sources, help="only this source")
    p.add_argument("--category", choices=categories, help="only this category")
    p.add_argument("--status", choices=statuses, help="only this status")
    p.add_argument("--set", help="only the queries of this published query set id")
    p.add_argument("--limit", type=int, default=100, help="print at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.set_defaults(handler=cmd_list)

    p = commands.add_parser(
        "publish-set",
        help="freeze queries into an immutable, content-hashed set",
        description="Publish a query set: the given ids, or every query matching the filters (never dropped ones).",
    )
    p.add_argument(
        "--name", required=True, help="the set's name; same content under the same name returns the existing version"
    )
    p.add_argument("--ids", nargs="+", help="query ids (default: every query matching the filters)")
    p.add_argument("--source", choices=sources, help="filter when no ids are given")
    p.add_argument("--category", choices=categories, help="filter when no ids are given")
    p.add_argument("--status", choices=statuses, help="filter when no ids are given")
    p.set_defaults(handler=cmd_publish_set)

    p = commands.add_parser(
        "emit",
        help="send a published set to the rollout service (idempotent)",
        description="Emit one QueryTask per query of a set; queries emitted before are not sent again.",
    )
    p.add_argument("--set", required=True, help="the query set id")
    p.add_argument("--episodes", type=int, default=1, help="episodes wanted per query (default 1)")
    p.set_defaults(handler=cmd_emit)

    p = commands.add_parser(
        "synthesize",
        help="synthesize task queries from pull-request records",
        description="Filter PR records, ask an OpenAI-compatible model for task descriptions, check alignment, decontaminate, select N for coverage.",
    )
    p.add_argument(
        "file",
        help="PR records as JSONL (repository, stars, number, title, body, diff, changed_files, base_sha, head_sha)",
    )
    p.add_argument(
        "--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (default: the service's setting)"
    )
    p.add_argument("--model", help="model name to ask (default: the service's setting)")
    p.add_argument(
        "--select",
        type=int,
        default=0,
        help="how many queries to select (default: the service's setting, 18 as in LIMI)",
    )
    p.add_argument(
        "--min-stars",
        dest="min_stars",
        type=int,
        help="keep repositories with at least this many stars (default 10001)",
    )
    p.add_argument(
        "--max-diff-tokens",
        dest="max_diff_tokens",
        type=int,
        help="keep diffs of at most this many tokens (default 1199)",
    )
    p.add_argument(
        "--min-changed-files",
        dest="min_changed_files",
        type=int,
        help="keep PRs changing at least this many files (default 1)",
    )
    p.add_argument(
        "--max-changed-files",
        dest="max_changed_files",
        type=int,
        help="keep PRs changing at most this many files (default 1)",
    )
    p.add_argument("--include-markdown-only", action="store_true", help="keep PRs that change only Markdown files")
    p.add_argument("--tokenizer", help="tokenizer.json on the service for diff token counts")
    p.add_argument(
        "--add-to-pool", action="store_true", help="add the selected queries to the pool as synthetic, pending"
    )
    p.add_argument("--report", help="also write the markdown report to this file")
    p.add_argument("--json", action="store_true", help="print the whole response as JSON")
    p.set_defaults(handler=cmd_synthesize)

    p = commands.add_parser(
        "dedupe",
        help="find near-duplicates in the pool and overlap with HumanEval / AgencyBench",
        description="MinHash near-duplicate detection within the pool and against evaluation data; prints a report.",
    )
    p.add_argument("--jaccard", type=float, help="Jaccard threshold for near-duplicates (default: the service's, 0.7)")
    p.add_argument(
        "--containment",
        type=float,
        help="shingle containment threshold for benchmark overlap (default: the service's, 0.6)",
    )
    p.add_argument(
        "--benchmarks", action="store_true", help="also compare with HumanEval prompts and AgencyBench queries"
    )
    p.add_argument("--apply", action="store_true", help="mark the dropped queries DROPPED (default: report only)")
    p.set_defaults(handler=cmd_dedupe)

    p = commands.add_parser(
        "curate",
        help="select a training dataset from stored trajectories and publish it",
        description="Score and filter trajectories, select N with category and repository coverage, publish a versioned dataset.",
    )
    p.add_argument("--name", required=True, help="dataset name (versions count per name)")
    p.add_argument("--size", type=int, required=True, help="number of trajectories to select")
    p.add_argument(
        "--tokenizer", help="tokenizer.json on the service (default: the service's, else a word/punctuation count)"
    )
    p.add_argument(
        "--max-tokens", dest="max_tokens", type=int, default=0, help="drop samples longer than this (default 125000)"
    )
    p.add_argument("--set", nargs="+", help="only trajectories of these query set ids")
    p.add_argument("--include-failed", action="store_true", help="also consider failed and aborted episodes")
    p.add_argument(
        "--max-failed-tool-rate",
        dest="max_failed_tool_rate",
        type=float,
        help="highest share of failed tool calls (default 0.5)",
    )
    p.add_argument(
        "--loop-repeats",
        dest="loop_repeats",
        type=int,
        help="identical consecutive actions that count as a loop (default 3)",
    )
    p.add_argument(
        "--max-empty-turns", dest="max_empty_turns", type=int, help="empty assistant turns allowed (default 0)"
    )
    p.add_argument("--max-per-query", dest="max_per_query", type=int, help="trajectories kept per query (default 1)")
    p.set_defaults(handler=cmd_curate)

    p = commands.add_parser(
        "export-limi",
        help="write a dataset in the LIMI schema",
        description="Export a dataset as LIMI JSONL or a JSON array.",
    )
    p.add_argument("dataset_id", help="the dataset id")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--strict", action="store_true", help="only the public keys (tools, messages); drop limi's metadata")
    p.add_argument(
        "--json-array",
        dest="json_array",
        action="store_true",
        help="one JSON array, the form of the public LIMI dataset",
    )
    p.set_defaults(handler=cmd_export_limi)

    p = commands.add_parser(
        "import-limi",
        help="import a LIMI dataset (JSON array or JSONL) as trajectories",
        description="Import LIMI samples; errors name the sample and the field.",
    )
    p.add_argument("file", help="the dataset file")
    p.add_argument(
        "--publish-as", dest="publish_as", help="also publish the samples, in file order, as a dataset of this name"
    )
    p.add_argument("--category", help=f"category label for the imported trajectories ({', '.join(categories)})")
    p.set_defaults(handler=cmd_import_limi)

    p = commands.add_parser(
        "convert-gemini",
        help="convert Gemini CLI event logs into LIMI samples (local, no service)",
        description="Convert event logs ({events: [...]} with api_request_full) into LIMI samples.",
    )
    p.add_argument("logs", nargs="+", help="event log files (JSON)")
    p.add_argument("--out", required=True, help="file to write: JSONL, or a JSON array with --json-array")
    p.add_argument("--json-array", dest="json_array", action="store_true", help="write one JSON array")
    p.add_argument(
        "--plain-system-prompt",
        dest="plain_system_prompt",
        action="store_true",
        help="do not append LIMI's tool list to the system prompt",
    )
    p.set_defaults(handler=cmd_convert_gemini, local=True)

    p = commands.add_parser(
        "report",
        help="print a dataset's report and save its histogram",
        description="Markdown summary of a dataset; with --out also the PNG histogram of token lengths and categories.",
    )
    p.add_argument("dataset_id", help="the dataset id")
    p.add_argument("--out", help="directory to write the PNG and the markdown into")
    p.set_defaults(handler=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    command = f"{parser.prog} {args.command}"
    try:
        if getattr(args, "local", False):
            return args.handler(args)
        with grpc.insecure_channel(args.address, options=CHANNEL_OPTIONS) as channel:
            return args.handler(curator_pb2_grpc.CuratorServiceStub(channel), args)
    except CommandError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            print(f"{command}: the curator at {args.address} is unavailable: {exc.details()}", file=sys.stderr)
            return EXIT_UNREACHABLE
        print(f"{command}: {exc.details()}", file=sys.stderr)
        return EXIT_USAGE if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
