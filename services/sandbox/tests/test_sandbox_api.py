"""The sandbox's gRPC API against a real service process: sessions, commands, file tools, dedupe, metrics."""

from __future__ import annotations

import io
import json
import tarfile
import threading

import grpc
import jsonschema
import pytest

from limi.sandbox.v1 import sandbox_pb2
from limi_sandbox.tools import TOOL_METHODS


@pytest.fixture(scope="module")
def service(sandbox_service_factory):
    return sandbox_service_factory()


@pytest.fixture
def session(service):
    created = service.create()
    yield created
    service.close(created.id)


def status_of(call) -> grpc.StatusCode:
    """The status code a call fails with; the test fails if it succeeds."""
    try:
        answer = call()
    except grpc.RpcError as exc:
        return exc.code()
    pytest.fail(f"the call succeeded: {answer!r}"[:300])


def test_list_tools_matches_what_the_servicer_implements(service):
    tools = [json.loads(text) for text in service.stub.ListTools(sandbox_pb2.ListToolsRequest(), timeout=10).tools_json]
    names = {tool["function"]["name"] for tool in tools}
    assert (
        names == {"shell", "python", "read_file", "write_file", "edit_file", "list_dir", "search"} == set(TOOL_METHODS)
    )
    service_descriptor = sandbox_pb2.DESCRIPTOR.services_by_name["SandboxService"]
    for tool in tools:
        assert tool["type"] == "function"
        parameters = tool["function"]["parameters"]
        jsonschema.Draft202012Validator.check_schema(parameters)
        method, request_name = TOOL_METHODS[tool["function"]["name"]]
        assert service_descriptor.methods_by_name[method].input_type.name == request_name
        fields = sandbox_pb2.DESCRIPTOR.message_types_by_name[request_name].fields_by_name
        assert set(parameters["properties"]) <= set(fields), tool["function"]["name"]
        assert set(parameters["required"]) <= set(parameters["properties"])


def test_a_session_comes_warm_with_its_limits_filled_in(service):
    created = service.create()
    try:
        assert created.id.startswith("sbx-") and len(created.id) == 36
        assert created.warm and created.backend == "bwrap"
        assert created.limits.memory_bytes == 2 << 30 and created.limits.wall_timeout.seconds == 120
        assert created.idle_timeout.seconds == 900
    finally:
        service.close(created.id)
    service.close(created.id)  # a retried close is not an error


def test_a_different_workspace_size_starts_cold(service):
    created = service.create(limits={"workspace_bytes": 32 << 20})
    try:
        assert not created.warm and created.limits.workspace_bytes == 32 << 20
        assert "32M" in service.exec(created.id, "df -h /workspace").text
    finally:
        service.close(created.id)


def test_exec_streams_output_and_reports_the_exit(service, session):
    out = service.exec(session.id, "echo out; echo err >&2; pwd; whoami; exit 3")
    assert out.stdout == b"out\n/workspace\nsandbox\n" and out.stderr == b"err\n"
    assert out.result.exit_code == 3 and not out.result.timed_out and out.result.duration.ToNanoseconds() > 0
    assert service.exec(session.id, "cat", stdin=b"from stdin").stdout == b"from stdin"
    assert service.exec(session.id, "echo $# $0").text == "0 bash\n"


def test_the_workspace_persists_between_calls_of_a_session(service, session):
    service.exec(session.id, "mkdir -p src && echo 'print(2 + 3)' > src/main.py")
    assert service.exec(session.id, "python3 src/main.py").text == "5\n"
    out = service.run_python(session.id, "import pathlib\nprint(pathlib.Path('src/main.py').read_text(), end='')")
    assert out.text == "print(2 + 3)\n" and out.result.exit_code == 0
    failed = service.run_python(session.id, "raise SystemExit(4)")
    assert failed.result.exit_code == 4


def test_file_tools(service, session):
    stub = service.stub
    written = stub.WriteFile(
        sandbox_pb2.WriteFileRequest(session_id=session.id, path="pkg/mod.py", content=b"x = 1\ny = 2\n"), timeout=10
    )
    assert written.bytes_written == 12
    read = stub.ReadFile(
        sandbox_pb2.ReadFileRequest(session_id=session.id, path="/workspace/pkg/mod.py", offset=2, limit=3), timeout=10
    )
    assert (read.content, read.size, read.truncated) == (b"= 1", 12, True)
    assert (
        stub.EditFile(
            sandbox_pb2.EditFileRequest(session_id=session.id, path="pkg/mod.py", old_text="y = 2", new_text="y = 3"),
            timeout=10,
        ).replacements
        == 1
    )
    assert service.exec(session.id, "cat pkg/mod.py").text == "x = 1\ny = 3\n"
    stub.WriteFile(
        sandbox_pb2.WriteFileRequest(
            session_id=session.id, path="run.sh", content=b"#!/bin/sh\necho ran\n", mode=0o755
        ),
        timeout=10,
    )
    assert service.exec(session.id, "./run.sh").text == "ran\n"
    service.exec(session.id, "ln -s pkg alias")
    listing = stub.ListDir(sandbox_pb2.ListDirRequest(session_id=session.id), timeout=10)
    entries = {e.name: e for e in listing.entries}
    assert (
        entries["pkg"].is_dir and entries["alias"].is_symlink and entries["run.sh"].size == 19 and not listing.truncated
    )
    found = stub.Search(sandbox_pb2.SearchRequest(session_id=session.id, pattern="[xy] = [0-9]"), timeout=10)
    assert {(m.path, m.line, m.text) for m in found.matches} == {("pkg/mod.py", 1, "x = 1"), ("pkg/mod.py", 2, "y = 3")}
    limited = stub.Search(
        sandbox_pb2.SearchRequest(session_id=session.id, pattern="=", path="pkg", max_results=1), timeout=10
    )
    assert len(limited.matches) == 1 and limited.truncated


def test_file_names_that_are_not_utf8_are_listed_and_found(service, session):
    """A name's bytes that are not UTF-8 show as U+FFFD (a proto string cannot carry them)."""
    service.exec(session.id, "mkdir d && echo x > $'d/caf\\xe9.txt'")
    (entry,) = service.stub.ListDir(sandbox_pb2.ListDirRequest(session_id=session.id, path="d"), timeout=10).entries
    assert entry.name == "caf\ufffd.txt" and entry.size == 2
    (match,) = service.stub.Search(
        sandbox_pb2.SearchRequest(session_id=session.id, pattern="x", path="d"), timeout=10
    ).matches
    assert match.path == "d/caf\ufffd.txt" and match.line == 1


def test_edit_must_match_exactly_once(service, session):
    stub = service.stub
    stub.WriteFile(sandbox_pb2.WriteFileRequest(session_id=session.id, path="f.txt", content=b"a a b"), timeout=10)
    for old in ("a", "zzz"):
        request = sandbox_pb2.EditFileRequest(session_id=session.id, path="f.txt", old_text=old, new_text="c")
        assert (
            status_of(lambda request=request: stub.EditFile(request, timeout=10)) == grpc.StatusCode.FAILED_PRECONDITION
        )
    assert (
        status_of(
            lambda: stub.ReadFile(sandbox_pb2.ReadFileRequest(session_id=session.id, path="missing.txt"), timeout=10)
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert service.exec(session.id, "cat f.txt").text == "a a b"


def test_upload_and_download_round_trip(service, session):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("proj/a.txt", b"alpha"), ("proj/sub/b.txt", b"beta")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("proj/link")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        archive.addfile(link)
    uploaded = service.stub.Upload(
        sandbox_pb2.UploadRequest(session_id=session.id, archive=buffer.getvalue(), path="in"), timeout=10
    )
    assert uploaded.files == 3
    assert service.exec(session.id, "cat in/proj/link in/proj/sub/b.txt").text == "alphabeta"
    downloaded = service.stub.Download(sandbox_pb2.DownloadRequest(session_id=session.id, path="in/proj"), timeout=10)
    with tarfile.open(fileobj=io.BytesIO(downloaded.archive)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert archive.extractfile(members["in/proj/sub/b.txt"]).read() == b"beta"
        assert members["in/proj/link"].issym() and members["in/proj/link"].linkname == "a.txt"


def test_downloads_beyond_the_cap_are_refused(service, session):
    service.exec(session.id, "head -c 13M /dev/urandom > big.bin")
    with pytest.raises(grpc.RpcError) as caught:
        service.stub.Download(sandbox_pb2.DownloadRequest(session_id=session.id, path="big.bin"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_initial_files_and_archive_at_create(service):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("repo/README")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    created = service.create(
        files=[sandbox_pb2.File(path="task.txt", content=b"do it")], workspace_archive=buffer.getvalue()
    )
    try:
        assert service.exec(created.id, "cat task.txt repo/README").text == "do ithello"
    finally:
        service.close(created.id)


def test_a_retried_exec_is_not_run_twice(service, session):
    first = service.exec(session.id, "echo run >> log.txt; wc -l < log.txt", request_id="exec-1")
    again = service.exec(session.id, "echo run >> log.txt; wc -l < log.txt", request_id="exec-1")
    assert first.text == again.text == "1\n" and first.result == again.result
    assert service.exec(session.id, "wc -l < log.txt").text == "1\n"
    assert (
        status_of(lambda: service.exec(session.id, "echo other", request_id="exec-1"))
        == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_a_retry_while_the_first_attempt_runs_waits_for_it(service, session):
    outputs = []
    command = "sleep 0.5; echo $RANDOM >> log2.txt; cat log2.txt"
    threads = [
        threading.Thread(target=lambda: outputs.append(service.exec(session.id, command, request_id="exec-2").text))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(outputs)) == 1 and len(outputs) == 3
    assert len(service.exec(session.id, "cat log2.txt").text.splitlines()) == 1


def test_retried_unary_calls_return_the_recorded_answer(service, session):
    stub = service.stub
    request = sandbox_pb2.WriteFileRequest(session_id=session.id, path="w.txt", content=b"first", request_id="write-1")
    assert stub.WriteFile(request, timeout=10).bytes_written == 5
    service.exec(session.id, "echo changed > w.txt")
    assert stub.WriteFile(request, timeout=10).bytes_written == 5
    assert service.exec(session.id, "cat w.txt").text == "changed\n"
    created = service.create(request_id="create-1")
    try:
        assert service.create(request_id="create-1").id == created.id
    finally:
        service.close(created.id)


def test_metrics_count_sessions_outcomes_and_the_pool(service, session):
    service.exec(session.id, "true")
    service.exec(session.id, "false")
    service.exec(session.id, "sleep 5", timeout=0.2)
    text = service.metrics()
    assert 'limi_sandbox_active_sessions{backend="bwrap"}' in text
    assert 'limi_sandbox_pool_size{backend="bwrap"}' in text
    for outcome in ("ok", "nonzero", "timeout"):
        assert f'limi_sandbox_exec_outcomes_total{{backend="bwrap",outcome="{outcome}"}}' in text
    assert 'limi_sandbox_exec_duration_seconds_count{backend="bwrap"}' in text
    assert 'limi_sandbox_sessions_created_total{backend="bwrap",source="warm"}' in text


def test_many_small_writes_arrive_whole_in_few_events(service, session):
    request = sandbox_pb2.RunPythonRequest(
        session_id=session.id, code="for i in range(20000):\n    print(i, flush=True)\n"
    )
    events = list(service.stub.RunPython(request, timeout=60))
    stdout = b"".join(e.stdout for e in events if e.WhichOneof("event") == "stdout")
    assert stdout == "".join(f"{i}\n" for i in range(20000)).encode()
    assert len(events) < 2000 and events[-1].result.exit_code == 0
