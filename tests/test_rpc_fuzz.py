"""Bad input to every RPC of the five services, found through server reflection (issue 14).

The five services run as real processes on a real nats-server. The test asks each one for its
methods and message descriptors through gRPC reflection, builds the request classes from those
descriptors alone, and sends to every method each server lists (its limi service, health and
reflection; all but Health.Watch, which streams until the client leaves): an empty request;
bytes that are no message; requests of 5 MB and of 20 MB (over the 16 MB limit); 10 MB in the
first string or bytes field; and, for every field (nested messages included, four levels deep),
the values that have broken services before: 1 MB strings, NUL bytes, invalid UTF-8 on the wire,
paths out of the data roots (`../../etc/passwd`, `/etc/passwd`, `file:///etc/passwd`), ids that
do not exist, -1 / 2^31-1 / 2^63-1, NaN and infinities, unknown enum values, 10,000-item lists
and maps. Client-streaming methods also get no message at all, a good message then garbage, and
10,000 messages. Sandbox calls carry the id of a live session, so that their path fields reach
the file tools, and methods whose first check is a required field get the bad value on top of a
request that passes it (BASES), so that it reaches the checks behind.

An answer fails the test when it is INTERNAL or UNKNOWN; when its status message is over 1 KiB;
when an INVALID_ARGUMENT, OUT_OF_RANGE or PERMISSION_DENIED message does not start with a field
of the request (`trajectory.steps[0].role: ...`; `request: ...` for bytes that are no message);
when invalid UTF-8 on the wire is blamed on another field than the one that holds it; when the
call outlives its deadline; and when the service dies or stops being SERVING. The test prints
the methods covered, the requests sent and the outcomes by status code. It does not check that
good requests work: each service's own tests do that.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import dataclasses
import io
import json
import math
import random
import re
import tarfile
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from limi.curator.v1 import curator_pb2
from limi.evaluator.v1 import evaluator_pb2
from limi.rollout.v1 import rollout_pb2
from limi.sandbox.v1 import sandbox_pb2
from limi.trainer.v1 import trainer_pb2
from limi_core.health_check import check_health, wait_for_health
from limi_core.processes import free_port

CONTRACT = (curator_pb2, sandbox_pb2, rollout_pb2, trainer_pb2, evaluator_pb2)
DEADLINE_SECONDS = 30.0
MAX_STATUS_BYTES = 1024
MAX_DEPTH = 4
WORKERS = 6
MIB = 1024 * 1024
FIELD_STATUSES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.PERMISSION_DENIED}
FORBIDDEN_STATUSES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
# Health.Watch streams until the client leaves, by design: a deadline is its only end.
ENDLESS = {"grpc.health.v1.Health/Watch"}
# Replaced after serialization by as many bytes that are not UTF-8.
UTF8_MARKER = "\x02not-utf-8\x02"
NOT_UTF8 = bytes([0xFF, 0xFE, 0xC0, 0xC1, 0xF5, 0xF8, 0xFD, 0x80, 0x80, 0xFF, 0xFE])
assert len(UTF8_MARKER.encode()) == len(NOT_UTF8)

STRINGS = [
    ("a NUL byte", "a\x00b"),
    ("../../etc/passwd", "../../etc/passwd"),
    ("/etc/passwd", "/etc/passwd"),
    ("file:///etc/passwd", "file:///etc/passwd"),
    ("an id that does not exist", "no-such-id-7f3a9c"),
    ("a 300-byte file name", "n" * 300),
    ("odd unicode", "\u202eevil\ufeff\U0001f600"),
    ("-1", "-1"),
]
INTS = {
    FieldDescriptor.CPPTYPE_INT32: [-1, 2**31 - 1, -(2**31)],
    FieldDescriptor.CPPTYPE_INT64: [-1, 2**31 - 1, 2**63 - 1, -(2**63)],
    FieldDescriptor.CPPTYPE_UINT32: [2**32 - 1],
    FieldDescriptor.CPPTYPE_UINT64: [2**64 - 1],
}
FLOATS = [math.nan, math.inf, -math.inf, -1.0, 1e300]
GARBAGE = [
    ("bytes that are no message", b"\xff\xff\xff\xff"),
    ("a truncated varint", b"\x08\x80"),
    ("a length past the end", b"\x0a\x7fab"),
    ("a group tag", b"\x0b\x0c"),
    ("random bytes", random.Random(14).randbytes(256)),
]


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("fuzz-upload.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


GEMINI_LOG = {
    "events": [
        {
            "type": "api_request_full",
            "data": {"full_request": {"messages": [{"role": "user", "parts": [{"text": "hi"}]}]}},
        }
    ]
}
LIMI_SAMPLE = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
CURATOR, SANDBOX = "limi.curator.v1.CuratorService", "limi.sandbox.v1.SandboxService"
# Requests that pass a method's first checks (a required field), as protobuf JSON.
BASES = {
    f"{CURATOR}/ImportQueries": {
        "format": "IMPORT_FORMAT_JSONL",
        "content": _b64('{"text": "Fix the pager."}\n'),
        "origin": "fuzz.jsonl",
    },
    f"{CURATOR}/GetQuery": {"id": "q-fuzz"},
    f"{CURATOR}/PublishQuerySet": {"name": "fuzz"},
    f"{CURATOR}/EmitQuerySet": {"query_set_id": "qs-fuzz", "episodes_per_query": 1},
    f"{CURATOR}/SynthesizeQueries": {
        "pull_requests_jsonl": _b64('{"repository": "a/b"}\n'),
        "model": "m",
        "origin": "prs.jsonl",
    },
    f"{CURATOR}/CurateDataset": {"name": "fuzz", "size": 1},
    f"{CURATOR}/GetDataset": {"id": "ds-fuzz"},
    f"{CURATOR}/GetDatasetReport": {"id": "ds-fuzz"},
    f"{CURATOR}/ExportLimiDataset": {"datasetId": "ds-fuzz"},
    f"{CURATOR}/ConvertToLimi": {"trajectory": {"id": "t", "steps": [{"role": "ROLE_USER", "content": "hi"}]}},
    f"{CURATOR}/ConvertFromLimi": {"sampleJson": json.dumps(LIMI_SAMPLE)},
    f"{CURATOR}/ConvertGeminiLog": {"logJson": json.dumps(GEMINI_LOG)},
    f"{CURATOR}/ImportLimiDataset": {"origin": "fuzz.jsonl", "data": _b64(json.dumps(LIMI_SAMPLE) + "\n")},
    f"{SANDBOX}/Exec": {"command": "true"},
    f"{SANDBOX}/RunPython": {"code": "pass"},
    f"{SANDBOX}/ReadFile": {"path": "fuzz.txt"},
    f"{SANDBOX}/WriteFile": {"path": "fuzz.txt", "content": _b64("x")},
    f"{SANDBOX}/EditFile": {"path": "fuzz.txt", "oldText": "x", "newText": "x"},
    f"{SANDBOX}/ListDir": {"path": "."},
    f"{SANDBOX}/Search": {"pattern": "x", "path": "."},
    f"{SANDBOX}/Upload": {"archive": _b64(_archive())},
    f"{SANDBOX}/Download": {"path": "."},
    "limi.rollout.v1.RolloutService/Correct": {"episodeId": "ep-fuzz", "text": "fuzz"},
    "limi.trainer.v1.TrainerService/StartRun": {"datasetId": "ds-fuzz"},
    "limi.evaluator.v1.EvaluatorService/Evaluate": {"checkpointId": "ck-fuzz", "benchmark": "limi-basics"},
}


@dataclasses.dataclass
class Case:
    method: str
    label: str
    payload: bytes | list[bytes]
    request_type: Descriptor
    streams_back: bool = False
    field: str = ""  # the field the bad value is in ("" for the request as a whole)
    on_the_wire: bool = False  # the fault is in the bytes: the answer must blame exactly `field`


@dataclasses.dataclass
class Outcome:
    case: Case
    code: grpc.StatusCode
    details: str
    seconds: float
    response: bytes = b""  # a unary call's answer


# ------------------------------------------------------------------ reflection


def reflect(channel: grpc.Channel) -> list:
    """The services `channel`'s server lists, as descriptors in a pool of their own."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    def ask(**request) -> reflection_pb2.ServerReflectionResponse:
        (reply,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=10)
        return reply

    names = [service.name for service in ask(list_services="").list_services_response.service]
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def load(reply: reflection_pb2.ServerReflectionResponse) -> None:
        for raw in reply.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files.setdefault(proto.name, proto)

    for name in names:
        load(ask(file_containing_symbol=name))
    while missing := {dep for proto in files.values() for dep in proto.dependency} - set(files):
        for name in missing:
            load(ask(file_by_filename=name))
    pool, added = descriptor_pool.DescriptorPool(), set()
    while len(added) < len(files):
        ready = [p for p in files.values() if p.name not in added and set(p.dependency) <= added]
        assert ready, f"reflection returned files whose dependencies never arrive: {sorted(set(files) - added)}"
        for proto in ready:
            pool.Add(proto)
            added.add(proto.name)
    return [pool.FindServiceByName(name) for name in names]


# ------------------------------------------------------------------ bad requests


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _scalar_values(field: FieldDescriptor, depth: int) -> list[tuple[str, object]]:
    big = MIB if depth <= 2 else 64 * 1024
    if field.type == FieldDescriptor.TYPE_STRING:
        return [("a 1 MB string" if big == MIB else "a 64 KiB string", "x" * big), *STRINGS]
    if field.type == FieldDescriptor.TYPE_BYTES:
        return [
            ("1 MB of random bytes" if big == MIB else "64 KiB of random bytes", random.Random(big).randbytes(big)),
            ("bytes that are not UTF-8", NOT_UTF8),
            ("a gzip header and garbage", b"\x1f\x8b\x08\x00garbage"),
        ]
    if field.type == FieldDescriptor.TYPE_BOOL:
        return [("true", True)]
    if field.type == FieldDescriptor.TYPE_ENUM:
        top = max(v.number for v in field.enum_type.values)
        return [("an unknown enum value 99", 99), ("a negative enum value -5", -5), ("the last enum value", top)]
    if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return [(repr(v), v) for v in FLOATS]
    return [(str(v), v) for v in INTS[field.cpp_type]]


def _small_value(field: FieldDescriptor) -> object:
    return {FieldDescriptor.TYPE_STRING: "x", FieldDescriptor.TYPE_BYTES: b"x", FieldDescriptor.TYPE_BOOL: True}.get(
        field.type, 1
    )


Mutation = tuple[str, str, Callable, bool]  # (field path, label, apply(message), fault on the wire)


def mutations(descriptor: Descriptor, depth: int = 1) -> Iterator[Mutation]:
    """Every bad value for every field of `descriptor`, nested messages included to MAX_DEPTH."""
    for field in descriptor.fields:
        name = field.name

        def at(message, name=name):
            return getattr(message, name)

        if _is_map(field):
            key_field, value_field = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            simple_value = value_field.message_type is None
            key = (lambda i: f"k{i}") if key_field.type == FieldDescriptor.TYPE_STRING else (lambda i: i)

            def many(message, at=at, key=key, simple=simple_value, value_field=value_field):
                entries = at(message)
                for i in range(10_000):
                    if simple:
                        entries[key(i)] = _small_value(value_field)
                    else:
                        entries[key(i)].SetInParent()

            yield name, "a 10,000-entry map", many, False
            if key_field.type == FieldDescriptor.TYPE_STRING:
                for label, bad_key in [
                    ("a 1 MB key", "k" * MIB),
                    ("a key with a NUL byte", "k\x00"),
                    ("a key ../../etc/passwd", "../../etc/passwd"),
                    ("a key that is not UTF-8", UTF8_MARKER),
                ]:

                    def bad(message, at=at, bad_key=bad_key, simple=simple_value, value_field=value_field):
                        if simple:
                            at(message)[bad_key] = _small_value(value_field)
                        else:
                            at(message)[bad_key].SetInParent()

                    yield name, label, bad, bad_key == UTF8_MARKER
            if simple_value:
                for label, value in _scalar_values(value_field, depth + 1):
                    yield (
                        name,
                        f"a value {label}",
                        lambda m, at=at, value=value, key=key: at(m).__setitem__(key(0), value),
                        False,
                    )
                if value_field.type == FieldDescriptor.TYPE_STRING:
                    yield (
                        name,
                        "a value that is not UTF-8",
                        lambda m, at=at, key=key: at(m).__setitem__(key(0), UTF8_MARKER),
                        True,
                    )
            continue
        if field.message_type is not None:
            if _repeated(field):
                yield name, "10,000 empty items", lambda m, at=at: [at(m).add() for _ in range(10_000)], False
                if depth < MAX_DEPTH:
                    for path, label, apply, wire in mutations(field.message_type, depth + 1):
                        yield (
                            f"{name}[0].{path}",
                            label,
                            lambda m, at=at, apply=apply: apply(at(m)[0] if len(at(m)) else at(m).add()),
                            wire,
                        )
            else:
                yield name, "an empty message", lambda m, at=at: at(m).SetInParent(), False
                if depth < MAX_DEPTH:
                    for path, label, apply, wire in mutations(field.message_type, depth + 1):
                        yield f"{name}.{path}", label, lambda m, at=at, apply=apply: apply(at(m)), wire
            continue
        if _repeated(field):
            small = _small_value(field)
            yield name, "10,000 items", lambda m, at=at, small=small: at(m).extend([small] * 10_000), False
            for label, value in _scalar_values(field, depth):
                yield name, f"an item {label}", lambda m, at=at, value=value: at(m).append(value), False
            if field.type == FieldDescriptor.TYPE_STRING:
                yield name, "an item that is not UTF-8", lambda m, at=at: at(m).append(UTF8_MARKER), True
            continue
        for label, value in _scalar_values(field, depth):
            yield name, label, lambda m, name=name, value=value: setattr(m, name, value), False
        if field.type == FieldDescriptor.TYPE_STRING:
            yield name, "not UTF-8 on the wire", lambda m, name=name: setattr(m, name, UTF8_MARKER), True


def _serialize(message) -> bytes:
    raw = message.SerializeToString()
    marker = UTF8_MARKER.encode()
    assert raw.count(marker) <= 1
    return raw.replace(marker, NOT_UTF8)


def _unknown_field(size: int) -> bytes:
    """Field 9999 (unknown to every message) as length-delimited bytes of `size`."""
    key, length = (9999 << 3) | 2, size
    out = bytearray()
    for value in (key, length):
        while value > 0x7F:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + b"\0" * size


def cases_for(method: MethodDescriptor, base: Callable[[object], None]) -> list[Case]:
    """The bad requests for one method; `base` fills fields every request carries (a live session id)."""
    path = f"{method.containing_service.full_name}/{method.name}"
    request_type = method.input_type
    cls = message_factory.GetMessageClass(request_type)

    def request(apply: Callable | None = None) -> bytes:
        message = cls()
        base(message)
        if apply is not None:
            json_format.ParseDict(BASES.get(path, {}), message)
            apply(message)
        return _serialize(message)

    def case(label: str, raw: bytes | list[bytes], field: str = "", on_the_wire: bool = False) -> Case:
        payload = [raw] if method.client_streaming and isinstance(raw, bytes) else raw
        return Case(path, label, payload, request_type, method.server_streaming, field, on_the_wire)

    cases = [case("an empty request", request())]
    cases += [case(label, raw) for label, raw in GARBAGE]
    cases += [case(f"a {size // MIB} MB request", request() + _unknown_field(size)) for size in (5 * MIB, 20 * MIB)]
    blob = next((f for f in request_type.fields if f.type in (f.TYPE_STRING, f.TYPE_BYTES) and not f.is_repeated), None)
    if blob is not None:
        value = "x" * (10 * MIB) if blob.type == blob.TYPE_STRING else b"x" * (10 * MIB)
        cases.append(case(f"{blob.name}: 10 MB", request(lambda m: setattr(m, blob.name, value)), blob.name))
    for field, label, apply, wire in mutations(request_type):
        cases.append(case(f"{field}: {label}", request(apply), field, wire))
    if method.client_streaming:
        cases += [
            case("no message at all", []),
            case("a good message, then bytes that are no message", [request(), b"\xff\xff\xff\xff"]),
            case("10,000 messages", [request()] * 10_000),
        ]
    return cases


# ------------------------------------------------------------------ sending and judging


def send(channel: grpc.Channel, case: Case) -> Outcome:
    started = time.monotonic()
    code, details, response = grpc.StatusCode.OK, "", b""
    kind = (isinstance(case.payload, list), case.streams_back)
    try:
        if kind == (False, False):
            response = channel.unary_unary(f"/{case.method}")(case.payload, timeout=DEADLINE_SECONDS)
        elif kind == (False, True):
            for _ in channel.unary_stream(f"/{case.method}")(case.payload, timeout=DEADLINE_SECONDS):
                pass
        elif kind == (True, False):
            channel.stream_unary(f"/{case.method}")(iter(case.payload), timeout=DEADLINE_SECONDS)
        else:
            for _ in channel.stream_stream(f"/{case.method}")(iter(case.payload), timeout=DEADLINE_SECONDS):
                pass
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
    return Outcome(case, code, details, time.monotonic() - started, response)


def blamed_field(details: str) -> str:
    return details.split(": ", 1)[0] if ": " in details else ""


def names_a_field(descriptor: Descriptor, path: str) -> bool:
    """Whether `path` ("trajectory.steps[0].role", "hyperparameters.lr") starts with fields of `descriptor`."""
    if path == "request":
        return True
    parts = re.sub(r"\[[^\]]*\]", "", path).split(".")
    for part in parts:
        field = descriptor.fields_by_name.get(part)
        if field is None:
            return False
        if field.message_type is None or _is_map(field):
            return True  # the rest names something inside the value (a JSON key, a map key)
        descriptor = field.message_type
    return True


def problems_with(outcome: Outcome) -> list[str]:
    case, code, details = outcome.case, outcome.code, outcome.details
    found = []
    if code in FORBIDDEN_STATUSES:
        found.append(f"{code.name}")
    if len(details.encode()) > MAX_STATUS_BYTES:
        found.append(f"a status message of {len(details.encode())} bytes")
    if "metadata size" in details:
        found.append("the status was lost to the metadata size limit")
    if code in FIELD_STATUSES:
        blamed = blamed_field(details)
        if not names_a_field(case.request_type, blamed):
            found.append(f"{code.name} names no field of {case.request_type.name}")
        elif case.on_the_wire and re.sub(r"\[[^\]]*\]", "", blamed) != re.sub(r"\[[^\]]*\]", "", case.field):
            found.append(f"bad UTF-8 in {case.field} blamed on {blamed!r}")
    if case.on_the_wire and code not in FIELD_STATUSES:
        found.append(f"bad UTF-8 in {case.field} answered {code.name}")
    return found


# ------------------------------------------------------------------ the test

CLOSED = f"127.0.0.1:{free_port()}"
SERVICE_ENV = {
    "curator": {"LIMI_CURATOR_SYNTHESIS_ENDPOINT": f"http://{CLOSED}/v1", "LIMI_CURATOR_SYNTHESIS_RETRIES": "0"},
    "sandbox": {"LIMI_SANDBOX_POOL_SIZE": "1", "LIMI_SANDBOX_MAX_SESSIONS": "8", "LIMI_SANDBOX_BACKENDS": "bwrap"},
    "rollout": {
        "LIMI_ROLLOUT_POLICY_ENDPOINT": f"http://{CLOSED}/v1",
        "LIMI_ROLLOUT_POLICY_ATTEMPTS": "1",
        "LIMI_ROLLOUT_SANDBOX_ADDRESS": CLOSED,
        "LIMI_ROLLOUT_CONSUME_QUERIES": "false",
    },
    "trainer": {"LIMI_TRAINER_AUTO_TRAIN": "false"},
    "evaluator": {
        "LIMI_EVALUATOR_CONSUME_CHECKPOINTS": "false",
        "LIMI_EVALUATOR_SANDBOX_ADDRESS": CLOSED,
        "LIMI_EVALUATOR_ROLLOUT_ADDRESS": CLOSED,
    },
}


def session_id_of(pool, raw: bytes) -> str:
    create = pool.FindMethodByName("limi.sandbox.v1.SandboxService.CreateSession")
    return message_factory.GetMessageClass(create.output_type).FromString(raw).id


def close_session(channel: grpc.Channel, pool, session_id: str) -> None:
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName("limi.sandbox.v1.CloseSessionRequest"))(
        session_id=session_id
    )
    channel.unary_unary(f"/{SANDBOX}/CloseSession")(request.SerializeToString(), timeout=30)


def fuzz_service(name: str, address: str, process) -> tuple[list[str], list[Outcome]]:
    with grpc.insecure_channel(
        address, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", 64 * MIB)]
    ) as channel:
        services = reflect(channel)
        pool = services[0].file.pool
        session_id = ""
        if name == "sandbox":
            session_id = session_id_of(pool, channel.unary_unary(f"/{SANDBOX}/CreateSession")(b"", timeout=60))

        def send_and_tidy(case: Case) -> Outcome:
            outcome = send(channel, case)
            if case.method == f"{SANDBOX}/CreateSession" and outcome.response:  # keep the sessions this test opens few
                close_session(channel, pool, session_id_of(pool, outcome.response))
            return outcome

        def base_for(method: MethodDescriptor) -> Callable[[object], None]:  # the live session
            carries_session = (
                session_id and "session_id" in method.input_type.fields_by_name and method.name != "CloseSession"
            )
            return (lambda m: setattr(m, "session_id", session_id)) if carries_session else (lambda m: None)

        methods, cases, last = [], [], []
        for service in services:
            for method in service.methods:
                path = f"{service.full_name}/{method.name}"
                if path in ENDLESS:
                    continue
                methods.append(path)
                (last if method.name == "CloseSession" else cases).extend(cases_for(method, base_for(method)))
        outcomes = []
        for batch in (cases, last):
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as workers:
                outcomes += list(workers.map(send_and_tidy, batch))
            assert process.poll() is None, f"{name} died during the fuzzing"
            assert check_health(address, timeout=10) == "SERVING", f"{name} is no longer SERVING"
    return methods, outcomes


def test_every_rpc_answers_bad_input_with_a_short_status_naming_the_field(service_process, capsys):
    started = time.monotonic()
    processes = {name: service_process(name, env=env) for name, env in SERVICE_ENV.items()}
    for name, service in processes.items():
        try:
            wait_for_health(service.grpc_address, "SERVING", timeout=90, process=service.process)
        except TimeoutError as exc:
            pytest.fail(f"{name} did not start: {exc}\n{service.log()[-3000:]}")
    methods, outcomes = [], []
    for name, service in processes.items():
        covered, answered = fuzz_service(name, service.grpc_address, service.process)
        methods += covered
        outcomes += answered
    elapsed = time.monotonic() - started

    by_code = collections.Counter(outcome.code.name for outcome in outcomes)
    slowest = max(outcomes, key=lambda o: o.seconds)
    failures = [(o, problem) for o in outcomes for problem in problems_with(o)]
    ours = {method for method in methods if method.startswith("limi.")}
    with capsys.disabled():
        print(
            f"\nrpc fuzz: {len(methods)} methods covered on {len(processes)} services ({len(ours)} limi methods, plus health and "
            f"reflection on each), {len(outcomes)} requests sent in {elapsed:.0f} s; outcomes: "
            f"{', '.join(f'{code} {count}' for code, count in by_code.most_common())}; "
            f"slowest {slowest.seconds:.1f} s ({slowest.case.method}, {slowest.case.label})"
        )
    report = "\n".join(
        f"{o.case.method} [{o.case.label}]: {problem}: {o.details[:200]!r}" for o, problem in failures[:40]
    )
    assert not failures, f"{len(failures)} wrong answers out of {len(outcomes)}:\n{report}"
    assert {o.case.method for o in outcomes} == set(methods)
    contract = {
        f"{service.full_name}/{method.name}"
        for module in CONTRACT
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert ours == contract, f"reflection missed {sorted(contract - ours)}"
