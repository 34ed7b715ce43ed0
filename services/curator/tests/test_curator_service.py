"""The curator as a real process on a real NATS: gRPC methods, events out, trajectories in, metrics, typed errors."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import grpc
import pytest

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi.dataset.v1 import dataset_pb2
from limi.query.v1 import query_pb2
from limi_core import bus
from limi_core.consumer import read_dead_letters
from limi_core.events import EventPublisher, event_id
from limi_core.health_check import wait_for_health
from limi_testing.synthetic_prs import generate_pull_requests

QUERIES = (
    "\n".join(
        json.dumps(row)
        for row in [
            {
                "text": "Implement a Java console task manager with priorities, due dates and persistence to a JSON file.",
                "category": "backend",
                "repository": "acme/tasks",
            },
            {
                "text": "Build a responsive React dashboard that charts CPU and memory of our build agents in real time.",
                "category": "frontend",
                "repository": "acme/dash",
            },
            {
                "text": "Find out why the nightly Spark job writes duplicate rows to the warehouse and fix it.",
                "category": "data_processing",
                "repository": "acme/etl",
            },
            {
                "text": "Containerise the Flask API with a multi-stage Dockerfile and a Helm chart with readiness probes.",
                "category": "deployment",
                "repository": "acme/api",
            },
        ]
    )
    + "\n"
)


@pytest.fixture
def curator_service(service_process):
    service = service_process("curator", env={"LIMI_CURATOR_SYNTHESIS_CONCURRENCY": "4"})
    wait_for_health(service.grpc_address, "SERVING", timeout=60, process=service.process)
    return service


async def _stream_messages(js, subject: str) -> list:
    stream = bus.stream_for(subject).name
    info = await js.stream_info(stream)
    return (
        [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
        if info.state.messages
        else []
    )


def _metrics(service) -> str:
    return urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=5).read().decode()


async def _import_and_publish(stub) -> tuple[list[str], query_pb2.QuerySet]:
    imported = await stub.ImportQueries(
        curator_pb2.ImportQueriesRequest(
            format=curator_pb2.IMPORT_FORMAT_JSONL, content=QUERIES.encode(), origin="real.jsonl"
        ),
        timeout=30,
    )
    query_set = await stub.PublishQuerySet(
        curator_pb2.PublishQuerySetRequest(name="real-v1", query_ids=imported.query_ids), timeout=30
    )
    return list(imported.query_ids), query_set


async def test_queries_are_imported_listed_published_and_emitted_once(curator_service, jetstream):
    async with grpc.aio.insecure_channel(curator_service.grpc_address) as channel:
        stub = curator_pb2_grpc.CuratorServiceStub(channel)
        ids, query_set = await _import_and_publish(stub)
        assert len(ids) == 4 and query_set.version == 1 and len(query_set.content_hash) == 64
        listed = await stub.ListQueries(
            curator_pb2.ListQueriesRequest(category=query_pb2.QUERY_CATEGORY_FRONTEND), timeout=30
        )
        assert [q.text[:24] for q in listed.queries] == ["Build a responsive React"]
        first = await stub.EmitQuerySet(
            curator_pb2.EmitQuerySetRequest(query_set_id=query_set.id, episodes_per_query=2), timeout=30
        )
        second = await stub.EmitQuerySet(
            curator_pb2.EmitQuerySetRequest(query_set_id=query_set.id, episodes_per_query=2), timeout=30
        )
        assert (first.emitted, first.already_emitted, second.emitted, second.already_emitted) == (4, 0, 0, 4)
        messages = await _stream_messages(jetstream, bus.QUERY_TASKS)
        assert len(messages) == 4
        task = query_pb2.QueryTask()
        task.ParseFromString(messages[0].data)
        assert task.query_set_id == query_set.id and task.episodes == 2 and task.query.id in ids
        assert messages[0].headers["Nats-Msg-Id"] == event_id("query", query_set.id, task.query.id)
        emitted = await stub.ListQueries(curator_pb2.ListQueriesRequest(query_set_id=query_set.id), timeout=30)
        assert set(emitted.status_by_id.values()) == {query_pb2.QUERY_STATUS_EMITTED}
        sets = await stub.ListQuerySets(curator_pb2.ListQuerySetsRequest(name="real-v1"), timeout=30)
        assert [s.id for s in sets.query_sets] == [query_set.id]
    assert 'limi_curator_queries{source="real",status="emitted"} 4.0' in _metrics(curator_service)
    assert "limi_curator_query_tasks_emitted_total 4.0" in _metrics(curator_service)


async def test_an_emitted_query_carries_its_workspace_files(curator_service, jetstream):
    row = {
        "text": "Make the CSV importer skip blank lines and add a test for it.",
        "category": "data_processing",
        "files": {
            "importer.py": "def load(lines):\n    return [l.split(',') for l in lines]\n",
            "data/in.csv": "a,b\n\n1,2\n",
        },
    }
    async with grpc.aio.insecure_channel(curator_service.grpc_address) as channel:
        stub = curator_pb2_grpc.CuratorServiceStub(channel)
        imported = await stub.ImportQueries(
            curator_pb2.ImportQueriesRequest(
                format=curator_pb2.IMPORT_FORMAT_JSONL, content=json.dumps(row).encode(), origin="seeded.jsonl"
            ),
            timeout=30,
        )
        query_set = await stub.PublishQuerySet(
            curator_pb2.PublishQuerySetRequest(name="seeded-v1", query_ids=imported.query_ids), timeout=30
        )
        await stub.EmitQuerySet(curator_pb2.EmitQuerySetRequest(query_set_id=query_set.id), timeout=30)
    (message,) = await _stream_messages(jetstream, bus.QUERY_TASKS)
    task = query_pb2.QueryTask()
    task.ParseFromString(message.data)
    assert task.query.id == imported.query_ids[0]
    assert {f.path: f.content.decode() for f in task.query.workspace_files} == row["files"]


async def test_trajectories_from_the_bus_become_a_published_dataset(
    curator_service, nats_client, jetstream, trajectory_factory
):
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    async with grpc.aio.insecure_channel(curator_service.grpc_address) as channel:
        stub = curator_pb2_grpc.CuratorServiceStub(channel)
        ids, query_set = await _import_and_publish(stub)
        await stub.EmitQuerySet(curator_pb2.EmitQuerySetRequest(query_set_id=query_set.id), timeout=30)
        for number, query_id in enumerate(ids):
            query = await stub.GetQuery(curator_pb2.GetQueryRequest(id=query_id), timeout=30)
            trajectory = trajectory_factory(f"episode-{number}", query, turns=2 + number)
            trajectory.lineage.query_set_id = query_set.id
            for _ in range(2):  # a retried publish: the broker keeps one copy
                await publisher.publish(bus.TRAJECTORIES_RECORDED, trajectory, event_id("trajectory", query_id, 1))
        await jetstream.publish(
            bus.TRAJECTORIES_RECORDED, b"\xff\x00 not a trajectory", headers={"Nats-Msg-Id": "trajectory:garbage:1"}
        )
        async with asyncio.timeout(30):
            while 'limi_curator_trajectories_consumed_total{outcome="OUTCOME_STATUS_COMPLETED"} 4.0' not in _metrics(
                curator_service
            ):
                await asyncio.sleep(0.1)
            while not await read_dead_letters(jetstream):
                await asyncio.sleep(0.1)
        dead = await read_dead_letters(jetstream)
        assert dead[0].msg_id == "trajectory:garbage:1" and "poison" in dead[0].error
        completed = await stub.ListQueries(
            curator_pb2.ListQueriesRequest(status=query_pb2.QUERY_STATUS_COMPLETED), timeout=30
        )
        assert sorted(q.id for q in completed.queries) == sorted(ids)

        request = curator_pb2.CurateDatasetRequest(name="agentic", size=3, query_set_ids=[query_set.id])
        dataset = await stub.CurateDataset(request, timeout=60)
        again = await stub.CurateDataset(request, timeout=60)
        assert again == dataset and dataset.stats.count == 3 and len(dataset.stats.categories) == 3
        events = await _stream_messages(jetstream, bus.DATASETS_PUBLISHED)
        assert len(events) == 1 and events[0].headers["Nats-Msg-Id"] == event_id("dataset", dataset.id)
        published = dataset_pb2.Dataset()
        published.ParseFromString(events[0].data)
        assert published == dataset
        assert await stub.GetDataset(curator_pb2.GetDatasetRequest(id=dataset.id), timeout=30) == dataset
        listed = await stub.ListDatasets(curator_pb2.ListDatasetsRequest(name="agentic"), timeout=30)
        assert [d.id for d in listed.datasets] == [dataset.id]
        report = await stub.GetDatasetReport(curator_pb2.GetDatasetRequest(id=dataset.id), timeout=60)
        assert report.histogram_png.startswith(b"\x89PNG") and "## Categories covered" in report.markdown
        assert report.filter_counts["selection.kept"] == 3
        chunks = [
            chunk
            async for chunk in stub.ExportLimiDataset(
                curator_pb2.ExportLimiDatasetRequest(dataset_id=dataset.id, strict=True), timeout=60
            )
        ]
        samples = [json.loads(line) for line in b"".join(c.data for c in chunks).decode().splitlines()]
        assert len(samples) == 3 and all(set(s) == {"tools", "messages"} for s in samples)
    metrics = _metrics(curator_service)
    assert "limi_curator_datasets_published_total 1.0" in metrics
    assert 'limi_curator_queries{source="real",status="completed"} 4.0' in metrics


async def test_synthesis_through_the_service_is_incremental(curator_service, scripted_llm):
    content = ("\n".join(json.dumps(r) for r in generate_pull_requests(240)) + "\n").encode()
    request = curator_pb2.SynthesizeQueriesRequest(
        pull_requests_jsonl=content,
        origin="prs.jsonl",
        endpoint=scripted_llm.url,
        model="scripted",
        select=18,
        add_to_pool=True,
    )
    async with grpc.aio.insecure_channel(
        curator_service.grpc_address, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        stub = curator_pb2_grpc.CuratorServiceStub(channel)
        first = await stub.SynthesizeQueries(request, timeout=120)
        assert len(first.selected) == 18 and first.accepted >= 18 and first.cache_hits == 0
        assert first.filter_counts["input.kept"] == 240 and first.filter_counts["selection.kept"] == 18
        assert [s.name for s in first.stages][:2] == ["input", "stars"] and sorted(first.added_query_ids) == sorted(
            q.id for q in first.selected
        )
        assert {r.reason for r in first.rejections} >= {
            "below_min_stars",
            "markdown_only",
            "too_many_changed_files",
            "leaks_solution",
        }
        assert "| stage | kept | dropped (reason: count) |" in first.report_markdown
        second = await stub.SynthesizeQueries(request, timeout=120)
        assert second.endpoint_calls == 0 and second.cache_hits == first.endpoint_calls and second.added_query_ids == []
        pool = await stub.ListQueries(
            curator_pb2.ListQueriesRequest(source=query_pb2.QUERY_SOURCE_SYNTHETIC), timeout=30
        )
        assert len(pool.queries) == 18
    metrics = _metrics(curator_service)
    assert re.search(
        r'limi_curator_synthesis_filter_total\{result="dropped.leaks_solution",stage="alignment"\} [1-9]', metrics
    )
    assert f"limi_curator_synthesis_cache_hits_total {float(first.endpoint_calls)}" in metrics


async def test_limi_datasets_import_in_chunks_and_gemini_logs_convert(curator_service, trajectory_factory):
    from limi_core import limi_format

    samples = [limi_format.trajectory_to_limi(trajectory_factory(f"t{i}", turns=1 + i), strict=True) for i in range(3)]
    content = json.dumps(samples).encode()
    async with grpc.aio.insecure_channel(curator_service.grpc_address) as channel:
        stub = curator_pb2_grpc.CuratorServiceStub(channel)

        async def chunks():
            yield curator_pb2.ImportLimiDatasetChunk(
                origin="limi.json", publish_as="limi-seed", category="debugging", data=content[:100]
            )
            for start in range(100, len(content), 100):
                yield curator_pb2.ImportLimiDatasetChunk(data=content[start : start + 100])

        response = await stub.ImportLimiDataset(chunks(), timeout=60)
        assert response.imported == 3 and response.dataset.stats.categories == {"debugging": 3}
        log = {
            "events": [
                {
                    "type": "api_request_full",
                    "data": {
                        "full_request": {
                            "messages": [
                                {"role": "user", "parts": [{"text": "hello"}]},
                                {"role": "model", "parts": [{"text": "hi"}]},
                            ]
                        }
                    },
                }
            ]
        }
        converted = await stub.ConvertGeminiLog(
            curator_pb2.ConvertGeminiLogRequest(log_json=json.dumps(log)), timeout=30
        )
        assert json.loads(converted.sample_json) == {
            "tools": [],
            "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        }


def _invalid_cases():
    bad_sample = json.dumps(
        [{"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}]
    ).encode()
    return [
        ("ImportQueries", curator_pb2.ImportQueriesRequest(content=b'{"text": "x"}'), "format: "),
        (
            "ImportQueries",
            curator_pb2.ImportQueriesRequest(
                format=curator_pb2.IMPORT_FORMAT_CSV,
                origin="queries.csv",
                content=b'text,category,author\n"Speed up the importer",optimization\n',
            ),
            "content: queries.csv line 2 field author: is missing",
        ),
        (
            "ImportQueries",
            curator_pb2.ImportQueriesRequest(
                format=curator_pb2.IMPORT_FORMAT_JSONL, origin="q.jsonl", content=b'{"text": "x"}\n{"text": '
            ),
            "content: q.jsonl line 2 field (line): is not valid JSON",
        ),
        (
            "ListQueries",
            curator_pb2.ListQueriesRequest(source=42),
            "source: must be one of QUERY_SOURCE_UNSPECIFIED, QUERY_SOURCE_REAL, QUERY_SOURCE_SYNTHETIC, got 42",
        ),
        ("GetQuery", curator_pb2.GetQueryRequest(), "id: is required"),
        (
            "PublishQuerySet",
            curator_pb2.PublishQuerySetRequest(name="s", query_ids=["ghost"]),
            "query_ids[0]: no query 'ghost'",
        ),
        ("EmitQuerySet", curator_pb2.EmitQuerySetRequest(), "query_set_id: is required"),
        ("SynthesizeQueries", curator_pb2.SynthesizeQueriesRequest(pull_requests_jsonl=b"{}", model="m"), "endpoint: "),
        (
            "SynthesizeQueries",
            curator_pb2.SynthesizeQueriesRequest(
                pull_requests_jsonl=b'{"repository": "a/b"}\n',
                origin="prs.jsonl",
                endpoint="http://127.0.0.1:9/v1",
                model="m",
            ),
            "pull_requests_jsonl: prs.jsonl line 1 field stars: is missing",
        ),
        ("DedupeQueries", curator_pb2.DedupeQueriesRequest(jaccard_threshold=2), "jaccard_threshold: "),
        ("CurateDataset", curator_pb2.CurateDatasetRequest(name="d", size=0), "size: "),
        (
            "CurateDataset",
            curator_pb2.CurateDatasetRequest(name="d", size=3, tokenizer="nope.json"),
            "tokenizer: must be an absolute path",
        ),
        ("GetDatasetReport", curator_pb2.GetDatasetRequest(), "id: is required"),
        (
            "ConvertGeminiLog",
            curator_pb2.ConvertGeminiLogRequest(log_json='{"events": 3}', origin="s.json"),
            "log_json: s.json field events: must be a list",
        ),
        (
            "ImportLimiDataset",
            [curator_pb2.ImportLimiDatasetChunk(origin="limi.json", data=bad_sample)],
            "data: limi.json sample 1 field messages[1].tool_call_id: missing or not a string",
        ),
    ]


async def test_bad_requests_get_invalid_argument_naming_the_field(curator_service):
    async with grpc.aio.insecure_channel(curator_service.grpc_address) as channel:
        stub = curator_pb2_grpc.CuratorServiceStub(channel)
        for method, request, expected in _invalid_cases():
            call = getattr(stub, method)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                if isinstance(request, list):

                    async def chunks(items=request):
                        for item in items:
                            yield item

                    await call(chunks(), timeout=30)
                else:
                    await call(request, timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, caught.value.details())
            assert caught.value.details().startswith(expected), (method, caught.value.details())
        for method, request in [
            ("GetDataset", curator_pb2.GetDatasetRequest(id="ghost")),
            ("EmitQuerySet", curator_pb2.EmitQuerySetRequest(query_set_id="ghost")),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await getattr(stub, method)(request, timeout=30)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CurateDataset(curator_pb2.CurateDatasetRequest(name="d", size=3), timeout=30)
        assert (
            caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            and "no trajectories are stored" in caught.value.details()
        )
    assert curator_service.process.poll() is None


async def test_an_import_over_the_size_limit_is_resource_exhausted_and_the_service_lives_on(service_process):
    service = service_process("curator", env={"LIMI_CURATOR_MAX_IMPORT_BYTES": "2048"})
    wait_for_health(service.grpc_address, "SERVING", timeout=60, process=service.process)
    async with grpc.aio.insecure_channel(service.grpc_address) as channel:
        stub = curator_pb2_grpc.CuratorServiceStub(channel)

        async def chunks():
            for _ in range(3):
                yield curator_pb2.ImportLimiDatasetChunk(origin="big.jsonl", data=b" " * 1024)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ImportLimiDataset(chunks(), timeout=30)
        assert (
            caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            and "LIMI_CURATOR_MAX_IMPORT_BYTES" in caught.value.details()
        )
        listed = await stub.ListQueries(curator_pb2.ListQueriesRequest(), timeout=30)
        assert list(listed.queries) == []


def test_an_unwritable_data_directory_stops_the_service_with_one_sentence(service_process, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    service = service_process("curator", env={"LIMI_DATA_DIR": str(blocker)})
    assert service.process.wait(30) == 2
    assert f"limi-curator: cannot open the curator database {blocker}/curator.sqlite" in service.log()
