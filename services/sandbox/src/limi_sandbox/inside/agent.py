"""The agent that runs INSIDE every sandbox: one long-lived process per session that runs commands.

The service starts it once per sandbox (bwrap, gVisor, or `kubectl exec` in a pod) and then
talks to it over its stdin/stdout with length-prefixed frames (`!II` header and body lengths,
a JSON header, raw body bytes). It runs each command in a new session and process group with
rlimits (CPU seconds, address space, processes, file size, open files), streams stdout and
stderr, caps the output, enforces a wall-clock deadline, and afterwards kills whatever the
command left behind (its process group, and orphans that escaped with `setsid`). It also does
the file tools (read, write, edit, list, search, tar upload and download) confined to the
workspace, so that a path is resolved with the sandbox's own view of the filesystem.

It is NOT a security boundary: it runs with the sandbox's privileges, and code in the sandbox
can tamper with it. That only affects answers about the same session; the isolation comes from
the namespaces, cgroups and rlimits around it, and the service bounds every frame it sends.
Standard library only, Python 3.9+, no imports from limi (it runs on images we do not build).
"""

import json
import os
import resource
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agent_files  # noqa: E402  (shipped beside this file; -I leaves the script's folder off sys.path)

FRAME = struct.Struct("!II")
MAX_HEADER, MAX_BODY = 1 << 20, 64 << 20
CHUNK = 64 * 1024
RLIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
           "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE}
MEMORY_HINTS = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc", b"out of memory")


class FrameWriter:
    """Writes frames to fd 1 from any thread, one whole frame at a time."""

    def __init__(self, fd):
        self.fd, self.lock = fd, threading.Lock()

    def send(self, header, body=b""):
        encoded = json.dumps(header, separators=(",", ":")).encode()
        data = FRAME.pack(len(encoded), len(body)) + encoded + body
        with self.lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]


def read_exact(fd, size):
    parts, left = [], size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_frame(fd):
    prefix = read_exact(fd, FRAME.size)
    if prefix is None:
        return None
    header_size, body_size = FRAME.unpack(prefix)
    if header_size > MAX_HEADER or body_size > MAX_BODY:
        raise SystemExit("limi agent: oversized frame")
    header = json.loads(read_exact(fd, header_size) or b"{}")
    return header, (read_exact(fd, body_size) if body_size else b"")


def process_table():
    """pid -> parent pid for every process this sandbox can see."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                table[int(name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    return table


class OutputBatch:
    """A command's output on its way to the service: small writes gathered into fewer frames, capped.

    Bytes wait at most LINGER seconds (or until CHUNK of them, or the other stream writes), so a
    program printing one line at a time does not cost one frame per line; beyond `max_output`
    bytes nothing more is sent and the output counts as truncated.
    """

    LINGER = 0.01

    def __init__(self, out, rid, max_output):
        self.out, self.rid, self.room = out, rid, max_output
        self.kind, self.buffer, self.since, self.truncated = None, bytearray(), None, False

    def add(self, kind, data, now):
        keep = data[:max(self.room, 0)]
        self.room -= len(keep)
        self.truncated = self.truncated or len(keep) < len(data)
        if not keep:
            return
        if kind != self.kind:
            self.flush()
        self.kind = kind
        self.buffer += keep
        self.since = self.since or now
        if len(self.buffer) >= CHUNK:
            self.flush()

    def due(self, now):
        """Seconds until the gathered bytes must go (a large number when there are none)."""
        return self.since + self.LINGER - now if self.buffer else 3600.0

    def flush(self):
        if self.buffer:
            self.out.send({"id": self.rid, "type": self.kind}, bytes(self.buffer))
            self.buffer, self.since = bytearray(), None


class Running:
    def __init__(self, process):
        self.process, self.kill_reason = process, None


class Agent:
    def __init__(self, out, sweep_orphans):
        self.out, self.sweep_orphans = out, sweep_orphans
        self.running = {}
        self.killed_before_start = set()
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.protected = {0, 1, self.pid}
        table = process_table()
        parent = table.get(self.pid, 0)
        while parent not in (0, 1) and parent not in self.protected:
            self.protected.add(parent)
            parent = table.get(parent, 0)

    def dispatch(self, header, body):
        op, rid = header.get("op"), header.get("id")
        if op == "kill":
            self.kill(header.get("target"), "cancelled")
            return
        if op == "ping":
            self.out.send({"id": rid, "type": "result", "pid": self.pid})
            return
        target = self.run_exec if op == "exec" else self.run_file_op
        try:
            threading.Thread(target=self.guarded, args=(target, rid, header, body), daemon=True).start()
        except RuntimeError as exc:  # no thread left: the process limit is exhausted
            self.out.send({"id": rid, "type": "error", "code": "resource_exhausted", "field": "",
                           "message": "the sandbox cannot start a thread: %s" % exc})

    def guarded(self, target, rid, header, body):
        try:
            target(rid, header, body)
        except agent_files.ToolError as exc:
            self.out.send({"id": rid, "type": "error", "code": exc.code, "field": exc.field, "message": exc.message})
        except Exception as exc:  # report, keep serving: one bad request must not end the session
            self.out.send({"id": rid, "type": "error", "code": "internal", "field": "", "message": "%s: %s" % (type(exc).__name__, exc)})

    def run_file_op(self, rid, header, body):
        result, payload = agent_files.handle(header, body)
        result.update({"id": rid, "type": "result"})
        self.out.send(result, payload)

    def kill(self, rid, reason):
        with self.lock:
            running = self.running.get(rid)
            if running is None:  # not started yet (or already done): remembered for run_exec to check
                if len(self.killed_before_start) > 1024:
                    self.killed_before_start.clear()
                self.killed_before_start.add(rid)
                return
        if running.kill_reason:
            return
        running.kill_reason = reason
        try:
            os.killpg(running.process.pid, signal.SIGKILL)
        except OSError:
            pass

    def run_exec(self, rid, header, body):
        limits = header.get("limits") or {}
        argv, preexec = command_argv(header, limits)
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.PIPE if body else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=agent_files.WORKSPACE, start_new_session=True, close_fds=True, preexec_fn=preexec,
            )
        except OSError as exc:
            self.out.send({"id": rid, "type": "stderr"}, ("limi: cannot start the command: %s\n" % exc).encode())
            self.out.send({"id": rid, "type": "result", "exit_code": 126, "signal": 0, "duration": time.monotonic() - started})
            return
        running = Running(process)
        with self.lock:
            self.running[rid] = running
            cancelled_already = rid in self.killed_before_start
            self.killed_before_start.discard(rid)
        if cancelled_already:
            self.kill(rid, "cancelled")
        try:
            flags = self.pump(rid, running, body, float(header.get("timeout", 60)), int(header.get("max_output", 1 << 20)), started)
        finally:
            with self.lock:
                del self.running[rid]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
        _, status, usage = os.wait4(process.pid, 0)  # reaped here for its rusage, so Popen must not wait again
        process.returncode = os.waitstatus_to_exitcode(status)
        self.sweep()
        cpu = usage.ru_utime + usage.ru_stime
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -signum
        self.out.send({
            "id": rid, "type": "result", "duration": time.monotonic() - started, "cpu_seconds": cpu,
            "exit_code": exit_code, "signal": signum,
            "timed_out": running.kill_reason == "timeout", "cancelled": running.kill_reason == "cancelled",
            "output_truncated": flags["truncated"], "memory_hint": flags["memory_hint"],
            "cpu_limit_exceeded": cpu_limit_hit(signum, exit_code, cpu, float(limits.get("cpu") or 0), running.kill_reason),
        })

    def pump(self, rid, running, stdin_data, timeout, max_output, started):
        """Move output to the service until the command and its pipes are done, or a limit hits."""
        process, selector = running.process, selectors.DefaultSelector()
        streams = {process.stdout.fileno(): "stdout", process.stderr.fileno(): "stderr"}
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        pending = memoryview(stdin_data) if stdin_data else None
        if pending is not None:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin.fileno(), selectors.EVENT_WRITE)
        pidfd = open_pidfd(process.pid)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ)
        batch = OutputBatch(self.out, rid, max_output)
        total, tail = 0, b""
        exited_at, deadline = None, started + timeout
        try:
            while streams:
                now = time.monotonic()
                if running.kill_reason:
                    break
                if now >= deadline:
                    running.kill_reason = "timeout"
                    break
                if exited_at is not None and now - exited_at > 0.05:
                    break  # the command is done; what still holds its pipes is left behind
                wait = deadline - now if pidfd is not None and exited_at is None else 0.05
                for key, _ in selector.select(min(wait, deadline - now, batch.due(now))):
                    fd = key.fd
                    if fd == pidfd:
                        selector.unregister(fd)
                        exited_at = time.monotonic()
                    elif pending is not None and fd == process.stdin.fileno():
                        try:
                            pending = pending[os.write(fd, pending[:CHUNK]):]
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            selector.unregister(fd)
                            process.stdin.close()
                            pending = None
                    else:
                        data = os.read(fd, CHUNK)
                        if not data:
                            selector.unregister(fd)
                            del streams[fd]
                            continue
                        total += len(data)
                        if streams[fd] == "stderr":
                            tail = (tail + data)[-4096:]
                        batch.add(streams[fd], data, time.monotonic())
                        if total > 8 * max_output + (8 << 20):
                            running.kill_reason = running.kill_reason or "output"
                if batch.due(time.monotonic()) <= 0:
                    batch.flush()
                if pidfd is None and exited_at is None and exited_without_reaping(process.pid):
                    exited_at = time.monotonic()
            batch.flush()
        finally:
            selector.close()
            if pidfd is not None:
                os.close(pidfd)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        return {"truncated": batch.truncated, "memory_hint": any(hint in tail for hint in MEMORY_HINTS)}

    def sweep(self):
        """Kill every process that no running command owns: what finished commands left behind.

        Only with --sweep, which the service passes when the agent has a pid namespace of its own:
        elsewhere "every process" would be the host's.
        """
        if not self.sweep_orphans:
            return
        with self.lock:
            owners = {running.process.pid for running in self.running.values()}
        if all(int(name) in self.protected or int(name) in owners for name in os.listdir("/proc") if name.isdigit()):
            return  # the usual case, cheaply: nothing but the agent, its ancestors and running commands
        for attempt in range(200):
            table = process_table()
            with self.lock:
                owners = {running.process.pid for running in self.running.values()}
            victims = [pid for pid in table if pid not in self.protected and not owned(pid, table, owners | {self.pid}, self.protected)]
            if not victims:
                return
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.001 * min(attempt, 20))

    def shutdown(self):
        with self.lock:
            targets = list(self.running)
        for rid in targets:
            self.kill(rid, "cancelled")
        self.sweep()


def owned(pid, table, owners, protected):
    """Whether `pid` descends from a running command (or from the agent itself)."""
    seen = 0
    while pid not in protected and seen < 4096:
        if pid in owners:
            return True
        pid, seen = table.get(pid, 0), seen + 1
    return pid in owners


def open_pidfd(pid):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def cpu_limit_hit(signum, exit_code, cpu, cpu_limit, kill_reason):
    """Whether the CPU-seconds rlimit ended the command (directly, or a child that bash reported)."""
    if kill_reason or not cpu_limit:
        return False
    if signal.SIGXCPU in (signum, exit_code - 128):
        return True
    return signal.SIGKILL in (signum, exit_code - 128) and cpu >= cpu_limit - 0.05


def exited_without_reaping(pid):
    """Whether the child exited, leaving it to be reaped with its rusage (waitid with WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def command_argv(header, limits):
    """The argv of a command, and a function to run in the child before exec (None when bash sets the limits).

    With bash, the rlimits are `ulimit` builtins in front of the command, which keeps the fast
    vfork path of subprocess; the command itself runs through `eval` in that same bash, so it
    sees no extra arguments. Without bash, the limits are set in the child by Python.
    """
    if os.path.exists("/bin/bash"):
        script = ulimit_script(limits) + "echo 1000 > /proc/self/oom_score_adj 2>/dev/null; "
        if header.get("argv"):
            return ["/bin/bash", "-c", script + 'exec "$@"', "bash"] + list(header["argv"]), None
        run = '__limi_command=$1; set --; eval "unset __limi_command; $__limi_command"'
        return ["/bin/bash", "-c", script + run, "bash", header.get("command", "")], None
    return list(header.get("argv") or ["/bin/sh", "-c", header.get("command", "")]), lambda: apply_limits(limits)


def ulimit_script(limits):
    """bash `ulimit` commands for the limits, capped at the agent's own hard limits."""
    parts = ["ulimit -c 0"]
    flags = {"cpu": "-t", "nproc": "-u", "fsize": "-f", "nofile": "-n", "as": "-v"}
    for name, flag in sorted(flags.items()):
        value = int(limits.get(name) or 0)
        if not value:
            continue
        hard = resource.getrlimit(RLIMITS[name])[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard - 1 if name == "cpu" else hard)
        if name in ("fsize", "as"):
            value = max(1, value // 1024)
        if name == "cpu":
            parts.append("ulimit -S -t %d && ulimit -H -t %d" % (value, value + 1))
        else:
            parts.append("ulimit %s %d" % (flag, value))
    return " && ".join(parts) + " || exit 125; "


def apply_limits(limits):
    """In the child, before exec: rlimits, and first in line for the OOM killer."""
    for name, value in limits.items():
        if name in RLIMITS and value:
            soft = int(value)
            hard = soft + 1 if name == "cpu" else soft
            resource.setrlimit(RLIMITS[name], (soft, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")
    except OSError:
        pass


def run_as_init():
    """As PID 1 (gVisor, a pod): fork the agent and reap every orphan until it exits."""
    child = os.fork()
    if child == 0:
        return
    for fd in (0, 1):
        os.close(fd)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, f: os.kill(child, signal.SIGKILL))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def reap_forever():
    """The main process of a Kubernetes pod: reaps orphans; agents are started with exec."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})
    while True:
        if signal.sigwait({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}) != signal.SIGCHLD:
            return
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass


def main():
    if sys.argv[1:] == ["--init"]:
        reap_forever()
        return
    if os.getpid() == 1:
        run_as_init()
    out = FrameWriter(1)
    agent = Agent(out, sweep_orphans="--sweep" in sys.argv[1:])
    out.send({"id": 0, "type": "ready", "pid": agent.pid, "version": 1})
    try:
        while True:
            frame = read_frame(0)
            if frame is None:
                break
            agent.dispatch(*frame)
    finally:
        agent.shutdown()


if __name__ == "__main__":
    main()
