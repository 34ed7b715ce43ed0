"""`limi up` as a person runs it: all SERVING, a clean stop, and one sentence for each set-up failure."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from limi_cli.stack import DEFAULT_NATS_PORT
from limi_core.settings import DEFAULT_PORTS, SERVICES


def _free_offset() -> int:
    for _ in range(50):
        offset = random.randrange(1000, 9000, 10)
        ports = [DEFAULT_NATS_PORT + offset] + [p + offset for name in SERVICES for p in DEFAULT_PORTS[name]]
        if all(_bindable(port) for port in ports):
            return offset
    raise RuntimeError("no free block of ports")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _children(pid: int) -> set[int]:
    found = set()
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _processes_using(data_dir: pathlib.Path) -> list[int]:
    """Live processes whose command line or environment names `data_dir`."""
    needle = str(data_dir).encode()
    found = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "cmdline").read_bytes() or needle in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return [pid for pid in found if _alive(pid) and pid != os.getpid()]


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _limi(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "limi_cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(process: subprocess.Popen, text: str, timeout: float = 90) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(
        f"{text!r} not printed; got {lines!r}; stderr {process.stderr.read() if process.poll() is not None else ''}"
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_limi_up_serves_everything_then_stops_with_no_process_left(tmp_path, stop_signal):
    offset = _free_offset()
    up = _limi(["up", "--data-dir", str(tmp_path), "--port-offset", str(offset), "--grace", "3"])
    started = time.monotonic()
    lines = _wait_for_line(up, "all services SERVING")
    assert time.monotonic() - started < 60
    for name in SERVICES:
        assert any(
            line.strip().startswith(name) and f":{DEFAULT_PORTS[name].grpc + offset}" in line for line in lines
        ), lines

    status = subprocess.run(
        [sys.executable, "-m", "limi_cli", "status", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("SERVING") == len(SERVICES)

    children = _children(up.pid)
    assert len(children) == len(SERVICES) + 1  # the services and nats-server
    up.send_signal(stop_signal)
    assert up.wait(60) == 0
    assert (
        "stopped (curator exit 0, sandbox exit 0, rollout exit 0, trainer exit 0, evaluator exit 0)" in up.stdout.read()
    )
    assert not [pid for pid in children if _alive(pid)]
    assert _processes_using(tmp_path) == []
    assert _bindable(DEFAULT_PORTS["curator"].grpc + offset) and _bindable(DEFAULT_NATS_PORT + offset)
    after = subprocess.run(
        [sys.executable, "-m", "limi_cli", "status", "--data-dir", str(tmp_path), "--port-offset", str(offset)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert after.returncode == 4 and after.stdout.count("UNREACHABLE") == len(SERVICES)


def test_limi_up_killed_hard_takes_its_children_with_it(tmp_path):
    up = _limi(["up", "--data-dir", str(tmp_path), "--port-offset", str(_free_offset())])
    _wait_for_line(up, "all services SERVING")
    children = _children(up.pid)
    up.kill()
    up.wait(10)
    deadline = time.monotonic() + 10
    while [pid for pid in children if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]
    assert _processes_using(tmp_path) == []


def test_taken_port_is_one_sentence_and_exit_3(tmp_path):
    offset = _free_offset()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", DEFAULT_PORTS["rollout"].grpc + offset))
        holder.listen()
        up = _limi(["up", "--data-dir", str(tmp_path), "--port-offset", str(offset)])
        _out, err = up.communicate(timeout=60)
    assert up.returncode == 3
    assert (
        err.strip()
        == f"limi up: port {DEFAULT_PORTS['rollout'].grpc + offset} (rollout gRPC) is already in use: stop what holds it or pass --port-offset"
    )


def test_a_wrong_nats_server_setting_is_one_sentence_and_exit_2(tmp_path):
    up = _limi(
        ["up", "--data-dir", str(tmp_path), "--port-offset", str(_free_offset())],
        env={"LIMI_NATS_SERVER": str(tmp_path / "nope")},
    )
    _out, err = up.communicate(timeout=60)
    assert up.returncode == 2
    assert err.strip() == f"limi up: LIMI_NATS_SERVER={tmp_path / 'nope'} is not an executable file"


def test_service_dying_at_start_is_named_and_nothing_is_left(tmp_path):
    up = _limi(
        ["up", "--data-dir", str(tmp_path), "--port-offset", str(_free_offset())], env={"LIMI_LOG_LEVEL": "LOUD"}
    )
    _out, err = up.communicate(timeout=90)
    assert up.returncode == 1
    assert (
        "service exited with code 2 while starting: limi: environment variable LIMI_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"
        in err
    )
    assert len(err.strip().splitlines()) == 1
    assert _processes_using(tmp_path) == []
