"""The commands of the in-sandbox agent: start with limits, stream output, deadline, reap, sweep.

A `Command` is one `exec` request, driven by the agent's event loop (agent.py): it starts the
program in a new session and process group with rlimits, reads its stdout and stderr when the
loop says so (`on_output`), gathers small writes into fewer frames (`OutputBatch`), writes its
stdin without blocking, and on each `tick` enforces the wall-clock deadline and finishes once the
program has exited and its pipes are drained. Finishing kills the process group, reaps the
program with its rusage and sends one result frame. `Sweeper` kills what finished commands left
behind (orphans that escaped with `setsid`). Nothing here blocks the loop for long, and nothing
here reads from the service. Standard library only, Python 3.9+.
"""

import json
import os
import resource
import selectors
import signal
import sys
import threading
import time

CHUNK = 64 * 1024
RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
}
MEMORY_HINTS = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc", b"out of memory")
# After the program exits, how long to wait for pipes that something it left behind still holds.
EXIT_GRACE = 0.05
# Output frames per command at most; the service's budget for a call allows this many headers.
MAX_OUTPUT_FRAMES = 32768


class OutputBatch:
    """A command's output on its way to the service: small writes gathered into fewer frames, capped.

    Bytes wait at most `linger` seconds (or until CHUNK of them, or the other stream writes), so a
    program printing one line at a time does not cost one frame per line; beyond `max_output`
    bytes, or MAX_OUTPUT_FRAMES frames, nothing more is sent and the output counts as truncated.
    """

    def __init__(self, channel, rid, max_output):
        self.channel, self.rid, self.room = channel, rid, max_output
        self.kind, self.buffer, self.since, self.truncated = None, bytearray(), None, False
        self.frames, self.linger = 0, 0.01

    def add(self, kind, data, now):
        if self.frames >= MAX_OUTPUT_FRAMES - 1:
            self.room = 0
        keep = data[: max(self.room, 0)]
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
        """Seconds until the gathered bytes must go (None when there are none)."""
        return self.since + self.linger - now if self.buffer else None

    def flush(self):
        if self.buffer:
            self.channel.send({"id": self.rid, "type": self.kind}, bytes(self.buffer))
            self.buffer, self.since = bytearray(), None
            self.frames += 1
            if self.frames == 1024:
                self.linger = 0.05  # a chatty program: fewer, larger frames from here on


class Command:
    """One running `exec` request. The loop calls on_output/on_stdin on readiness and tick() often."""

    def __init__(self, rid, header, body, channel, selector):
        self.rid, self.channel, self.selector = rid, channel, selector
        self.limits = header.get("limits") or {}
        self.started = time.monotonic()
        self.deadline = self.started + float(header.get("timeout", 60))
        max_output = int(header.get("max_output", 1 << 20))
        self.batch = OutputBatch(channel, rid, max_output)
        self.read_bytes, self.most_output_read = 0, 8 * max_output + (8 << 20)
        self.kill_reason, self.exited_at, self.reading, self.finished = None, None, True, False
        self.stderr_tail = b""
        self.pid, self.stdin, stdout, stderr = spawn(command_argv(header, self.limits), bool(body))
        self.streams = {stdout: "stdout", stderr: "stderr"}
        for fd in self.streams:
            selector.register(fd, selectors.EVENT_READ, self.on_output)
        self.pending = memoryview(body) if body else None
        if self.pending is not None:
            selector.register(self.stdin, selectors.EVENT_WRITE, self.on_stdin)

    def on_output(self, fd):
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        if not data:
            self._close_stream(fd)
            return
        self.on_data(fd, data)

    def on_data(self, fd, data):
        kind = self.streams[fd]
        if kind == "stderr":
            self.stderr_tail = (self.stderr_tail + data)[-4096:]
        self.batch.add(kind, data, time.monotonic())
        self.read_bytes += len(data)
        if self.read_bytes > self.most_output_read:
            self.kill("output")  # far past its cap (`yes`): reading more to throw away is only work

    def on_stdin(self, fd):
        try:
            self.pending = self.pending[os.write(fd, self.pending[:CHUNK]) :]
        except BlockingIOError:
            return
        except OSError:  # the program closed its stdin
            self.pending = self.pending[:0]
        if not self.pending:
            self.selector.unregister(fd)
            self._close_stdin()
            self.pending = None

    def set_reading(self, reading):
        """Read the program's output or not (the service is behind: the program then blocks on a full pipe)."""
        if reading == self.reading:
            return
        self.reading = reading
        if reading and self.exited_at is not None:
            self.exited_at = time.monotonic()  # the grace for its pipes counts only while they are read
        for fd in self.streams:
            if reading:
                self.selector.register(fd, selectors.EVENT_READ, self.on_output)
            else:
                self.selector.unregister(fd)

    def kill(self, reason):
        if self.kill_reason or self.finished:
            return
        self.kill_reason = reason
        kill_group(self.pid)
        for fd in list(self.streams):
            self._close_stream(fd)

    def check_exit(self):
        if self.exited_at is None and exited_without_reaping(self.pid):
            self.exited_at = time.monotonic()

    def next_wakeup(self, now):
        """Seconds until tick() has something to do without any fd becoming ready."""
        times = [self.deadline - now]
        due = self.batch.due(now)
        if due is not None:
            times.append(due)
        if self.exited_at is not None and self.reading:
            times.append(self.exited_at + EXIT_GRACE - now)
        elif not self.streams:
            times.append(0.01)  # the pipes are closed but the exit was not seen yet
        return max(0.0, min(times))

    def tick(self, now):
        """Deadline and lingering output; True when the command is over and finish() may be called."""
        if now >= self.deadline and not self.kill_reason:
            self.kill("timeout")
        if self.batch.due(now) is not None and self.batch.due(now) <= 0:
            self.batch.flush()
        if not self.streams or self.kill_reason:
            self.check_exit()
        if self.exited_at is None:
            return False
        if self.streams and not self.kill_reason and (not self.reading or now - self.exited_at < EXIT_GRACE):
            return False  # output may still be in its pipes
        return True

    def finish(self):
        """Kill what is left of the process group, reap the program, and return its result frame."""
        self.finished = True
        for fd in list(self.streams):
            if self.reading and not self.kill_reason:
                self._drain(fd)
            self._close_stream(fd)
        self.batch.flush()
        if self.pending is not None:
            self.selector.unregister(self.stdin)
            self.pending = None
        self._close_stdin()
        kill_group(self.pid)
        _, status, usage = os.wait4(self.pid, 0)  # exited already; reaped here for its rusage
        cpu = usage.ru_utime + usage.ru_stime
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -signum
        return {
            "id": self.rid,
            "type": "result",
            "duration": time.monotonic() - self.started,
            "cpu_seconds": cpu,
            "exit_code": exit_code,
            "signal": signum,
            "timed_out": self.kill_reason == "timeout",
            "cancelled": self.kill_reason == "cancelled",
            "output_truncated": self.batch.truncated,
            "memory_hint": any(hint in self.stderr_tail for hint in MEMORY_HINTS),
            "cpu_limit_exceeded": cpu_limit_hit(
                signum, exit_code, cpu, float(self.limits.get("cpu") or 0), self.kill_reason
            ),
        }

    def _drain(self, fd, most=1 << 20):
        """What is already in a pipe that something the program left behind still holds open."""
        while most > 0 and fd in self.streams:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return
            if not data:
                return
            most -= len(data)
            self.on_data(fd, data)

    def _close_stream(self, fd):
        if fd not in self.streams:
            return
        if self.reading:
            self.selector.unregister(fd)
        del self.streams[fd]
        os.close(fd)

    def _close_stdin(self):
        if self.stdin is not None:
            os.close(self.stdin)
            self.stdin = None


class Sweeper:
    """Kills every process that no running command owns: what finished commands left behind.

    Only with --sweep, which the service passes when the agent has a pid namespace of its own:
    elsewhere "every process" would be the host's. `protected` are the agent and its ancestors.
    """

    def __init__(self, enabled):
        self.enabled = enabled
        self.protected = {0, 1, os.getpid()}
        table = process_table()
        parent = table.get(os.getpid(), 0)
        while parent not in (0, 1) and parent not in self.protected:
            self.protected.add(parent)
            parent = table.get(parent, 0)

    def needed(self, owners):
        """Whether any process is left that neither the agent nor a running command owns (cheap)."""
        if not self.enabled:
            return False
        return not all(
            int(name) in self.protected or int(name) in owners for name in os.listdir("/proc") if name.isdigit()
        )

    def sweep(self, running_owners):
        """Kill the orphans; `running_owners()` gives the pids of commands running now (asked each round)."""
        for attempt in range(200):
            table = process_table()
            owners = running_owners() | {os.getpid()}
            victims = [
                pid for pid in table if pid not in self.protected and not owned(pid, table, owners, self.protected)
            ]
            if not victims:
                return
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.001 * min(attempt, 20))


def process_table():
    """pid -> parent pid for every process this sandbox can see."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                table[int(name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    return table


def owned(pid, table, owners, protected):
    """Whether `pid` descends from a running command (or from the agent itself)."""
    seen = 0
    while pid not in protected and seen < 4096:
        if pid in owners:
            return True
        pid, seen = table.get(pid, 0), seen + 1
    return pid in owners


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def exited_without_reaping(pid):
    """Whether the child exited, leaving it to be reaped with its rusage (waitid with WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def cpu_limit_hit(signum, exit_code, cpu, cpu_limit, kill_reason):
    """Whether the CPU-seconds rlimit ended the command (directly, or a child that bash reported)."""
    if kill_reason or not cpu_limit:
        return False
    if signal.SIGXCPU in (signum, exit_code - 128):
        return True
    return signal.SIGKILL in (signum, exit_code - 128) and cpu >= cpu_limit - 0.05


def spawn(argv, with_stdin):
    """Start argv in a session of its own: (pid, stdin fd or None, stdout fd, stderr fd), all non-blocking.

    posix_spawn (a vfork-like clone in glibc) costs a fraction of subprocess.Popen's Python. The
    agent's own descriptors are close-on-exec (Python's default), so the child gets only 0-2; the
    signals the agent ignores (SIGPIPE, SIGXFSZ) are reset, as Popen's restore_signals does.
    """
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    in_read, in_write = os.pipe() if with_stdin else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None)
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, in_read, 0),
            (os.POSIX_SPAWN_DUP2, out_write, 1),
            (os.POSIX_SPAWN_DUP2, err_write, 2),
        ]
        pid = os.posix_spawn(
            argv[0], argv, os.environ, file_actions=actions, setsid=True, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
        )
    except BaseException:
        for fd in (out_read, err_read, in_write):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in (in_read, out_write, err_write):
            os.close(fd)
    for fd in (in_write, out_read, err_read):
        if fd is not None:
            os.set_blocking(fd, False)
    return pid, in_write, out_read, err_read


def command_argv(header, limits):
    """The argv of a command, with the rlimits applied before it runs.

    With bash, the rlimits are `ulimit` builtins in front of the command; the command itself runs
    through `eval` in that same bash, so it sees no extra arguments. Without bash (an image that
    has none), a small Python step sets them and execs the command.
    """
    if os.path.exists("/bin/bash"):
        script = ulimit_script(limits) + "echo 1000 > /proc/self/oom_score_adj 2>/dev/null; "
        if header.get("argv"):
            return ["/bin/bash", "-c", script + 'exec "$@"', "bash"] + [str(a) for a in header["argv"]]
        run = '__limi_command=$1; set --; eval "unset __limi_command; $__limi_command"'
        return ["/bin/bash", "-c", script + run, "bash", str(header.get("command", ""))]
    argv = [str(a) for a in header.get("argv") or ["/bin/sh", "-c", str(header.get("command", ""))]]
    here = os.path.dirname(os.path.abspath(__file__))
    step = f"import sys; sys.path.insert(0, {here!r}); import agent_commands; agent_commands.exec_with_limits()"
    return [sys.executable, "-I", "-S", "-c", step, json.dumps(limits)] + argv


def exec_with_limits():
    """The Python step without bash: argv[1] is the limits as JSON, the rest the command."""
    apply_limits(json.loads(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])


_hard_limits = {}
_hard_limits_lock = threading.Lock()


def hard_limit(name):
    with _hard_limits_lock:
        if name not in _hard_limits:
            _hard_limits[name] = resource.getrlimit(RLIMITS[name])[1]
        return _hard_limits[name]


def ulimit_script(limits):
    """bash `ulimit` commands for the limits, capped at the agent's own hard limits."""
    parts = ["ulimit -c 0"]
    flags = {"cpu": "-t", "nproc": "-u", "fsize": "-f", "nofile": "-n", "as": "-v"}
    for name, flag in sorted(flags.items()):
        value = int(limits.get(name) or 0)
        if not value:
            continue
        hard = hard_limit(name)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard - 1 if name == "cpu" else hard)
        if name in ("fsize", "as"):
            value = max(1, value // 1024)
        if name == "cpu":
            parts.append(f"ulimit -S -t {value} && ulimit -H -t {value + 1}")
        else:
            parts.append(f"ulimit {flag} {value}")
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
