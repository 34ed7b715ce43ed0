"""The agent that runs INSIDE every sandbox: one long-lived process per session that runs commands.

The service starts it once per sandbox (bwrap, gVisor, or `kubectl exec` in a pod) and then
talks to it over its stdin/stdout with length-prefixed frames (`!II` header and body lengths,
a JSON header, raw body bytes). One event loop on the main thread reads requests, runs commands
(agent_commands.py: rlimits, streamed and capped output, wall-clock deadline, reaping, sweeping
what they leave behind) and writes frames back without ever blocking on the service: when the
service is behind, the loop stops reading the commands' output, so they block on a full pipe,
while deadlines and kills still apply. File tools (agent_files.py) run in threads of their own.

The channel is kept out of the commands' reach: the agent and its init make themselves
non-dumpable (no ptrace, no `pidfd_getfd`, no /proc/<pid>/fd for a process of the same uid), the
local backends hand it a Unix socket (which /proc/<pid>/fd cannot reopen, even under gVisor),
and init keeps no copy of it. It is still NOT a security boundary: commands run with the same
uid and can kill it, which ends their own session; the service treats every frame as hostile.
Standard library only, Python 3.9+, no imports from limi (it runs on images we do not build).
"""

import collections
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agent_commands  # noqa: E402  (shipped beside this file; -I leaves the script's folder off sys.path)
import agent_files  # noqa: E402

FRAME = struct.Struct("!II")
MAX_HEADER, MAX_BODY = 1 << 20, 64 << 20
READ_CHUNK = 1 << 20
# Bytes of frames waiting for the service: above HIGH the commands' output is no longer read, below LOW again.
OUT_HIGH, OUT_LOW = 1 << 20, 256 << 10
MESSAGE_CHARS = 2000
PR_SET_DUMPABLE = 4


class Channel:
    """Frames from the service on fd_in and to it on fd_out, both non-blocking, for the event loop.

    `send()` may be called from any thread: it queues the frame (and wakes the loop when called
    from another thread); the loop writes queued frames as fast as the service takes them.
    """

    def __init__(self, fd_in, fd_out, wake):
        self.fd_in, self.fd_out, self.wake = fd_in, fd_out, wake
        self.inbox = bytearray()
        self.outbox = collections.deque()
        self.pending = 0
        self.lock = threading.Lock()
        self.loop_thread = threading.get_ident()
        os.set_blocking(fd_in, False)
        os.set_blocking(fd_out, False)

    def send(self, header, body=b""):
        encoded = json.dumps(header, separators=(",", ":")).encode()
        with self.lock:
            self.outbox.append(FRAME.pack(len(encoded), len(body)) + encoded)
            if body:
                self.outbox.append(memoryview(body))
            self.pending += FRAME.size + len(encoded) + len(body)
        if threading.get_ident() != self.loop_thread:
            self.wake()

    def flush(self):
        """Write what the service takes now; True when nothing is left waiting."""
        with self.lock:
            while self.outbox:
                data = self.outbox[0]
                try:
                    written = os.write(self.fd_out, data)
                except BlockingIOError:
                    return False
                self.pending -= written
                if written == len(data):
                    self.outbox.popleft()
                else:
                    self.outbox[0] = memoryview(data)[written:]
            return True

    def receive(self):
        """The whole frames that arrived: a list of (header, body), or None when the service hung up."""
        try:
            data = os.read(self.fd_in, READ_CHUNK)
        except BlockingIOError:
            return []
        if not data:
            return None
        self.inbox += data
        frames = []
        while len(self.inbox) >= FRAME.size:
            header_size, body_size = FRAME.unpack_from(self.inbox)
            if header_size > MAX_HEADER or body_size > MAX_BODY:
                raise SystemExit("limi agent: oversized frame")
            end = FRAME.size + header_size + body_size
            if len(self.inbox) < end:
                break
            header = json.loads(bytes(self.inbox[FRAME.size : FRAME.size + header_size]))
            frames.append((header, bytes(self.inbox[FRAME.size + header_size : end])))
            del self.inbox[:end]
        return frames


class Agent:
    def __init__(self, channel, selector, sweeper, wake_fd):
        self.channel, self.selector, self.sweeper = channel, selector, sweeper
        self.commands = {}
        self.reading = True
        self.writing = False
        self.children_changed = False
        self.done = False
        selector.register(channel.fd_in, selectors.EVENT_READ, self.on_input)
        selector.register(wake_fd, selectors.EVENT_READ, self.on_wake)

    def run(self):
        while not self.done:
            now = time.monotonic()
            waits = [command.next_wakeup(now) for command in self.commands.values()]
            registered = self.selector.get_map()
            for key, _ in self.selector.select(min(waits) if waits else None):
                if (
                    registered.get(key.fd) is key
                ):  # not closed (and its number reused) by an earlier event of this round
                    key.data(key.fd)
            now = time.monotonic()
            for rid, command in list(self.commands.items()):
                if self.children_changed:
                    command.check_exit()
                if command.tick(now):
                    del self.commands[rid]
                    self.finish(command)
            self.children_changed = False
            self.flush()

    def on_input(self, fd):
        frames = self.channel.receive()
        if frames is None:
            self.done = True
            return
        for header, body in frames:
            self.dispatch(header, body)

    def on_wake(self, fd):
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
        self.children_changed = True  # a SIGCHLD, or a file tool's answer: either way, look again

    def on_output_room(self, fd):
        self.flush()

    def flush(self):
        """Send what waits, and hold the commands' output back while the service is behind."""
        waiting = not self.channel.flush()
        if waiting and not self.writing:
            self.selector.register(self.channel.fd_out, selectors.EVENT_WRITE, self.on_output_room)
        elif self.writing and not waiting:
            self.selector.unregister(self.channel.fd_out)
        self.writing = waiting
        reading = self.channel.pending < (OUT_LOW if not self.reading else OUT_HIGH)
        if reading != self.reading:
            self.reading = reading
            for command in self.commands.values():
                command.set_reading(reading)

    def dispatch(self, header, body):
        op, rid = header.get("op"), header.get("id")
        if op == "kill":
            command = self.commands.get(header.get("target"))
            if command is not None:
                command.kill("cancelled")
            return
        if op == "ping":
            self.channel.send({"id": rid, "type": "result", "pid": os.getpid()})
            return
        if op == "exec":
            self.start_command(rid, header, body)
            return
        try:
            threading.Thread(target=self.run_file_op, args=(rid, header, body), daemon=True).start()
        except RuntimeError as exc:  # no thread left: the process limit is exhausted
            self.send_error(rid, "resource_exhausted", "", f"the sandbox cannot start a thread: {exc}")

    def start_command(self, rid, header, body):
        started = time.monotonic()
        try:
            command = agent_commands.Command(rid, header, body, self.channel, self.selector)
        except OSError as exc:
            self.channel.send({"id": rid, "type": "stderr"}, f"limi: cannot start the command: {exc}\n".encode())
            self.channel.send(
                {"id": rid, "type": "result", "exit_code": 126, "signal": 0, "duration": time.monotonic() - started}
            )
            return
        if not self.reading:
            command.set_reading(False)
        self.commands[rid] = command

    def finish(self, command):
        result = command.finish()
        if not self.sweeper.needed(self.running_pids()):
            self.channel.send(result)
            return

        def sweep_then_answer():  # a fork bomb can take a while to sweep: not on the loop
            self.sweeper.sweep(self.running_pids)
            self.channel.send(result)

        try:
            threading.Thread(target=sweep_then_answer, daemon=True).start()
        except RuntimeError:  # no thread left (the processes a bomb left use them all): sweep here
            sweep_then_answer()

    def running_pids(self):
        return {command.pid for command in list(self.commands.values())}

    def run_file_op(self, rid, header, body):
        try:
            result, payload = agent_files.handle(header, body)
        except agent_files.ToolError as exc:
            self.send_error(rid, exc.code, exc.field, exc.message)
            return
        except Exception as exc:  # report, keep serving: one bad request must not end the session
            self.send_error(rid, "internal", "", f"{type(exc).__name__}: {exc}")
            return
        result.update({"id": rid, "type": "result"})
        self.channel.send(result, payload)

    def send_error(self, rid, code, field, message):
        self.channel.send(
            {"id": rid, "type": "error", "code": code, "field": field, "message": str(message)[:MESSAGE_CHARS]}
        )

    def shutdown(self):
        for command in list(self.commands.values()):
            command.kill("cancelled")
        if self.sweeper.enabled:
            self.sweeper.sweep(lambda: set())


def make_undumpable():
    """PR_SET_DUMPABLE 0: processes of the same uid may not ptrace us or take our file descriptors."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):
        return False


def run_as_init():
    """As PID 1 (bwrap --as-pid-1, gVisor, a pod): fork the agent and reap every orphan until it exits.

    Init keeps nothing of the channel: it closes every descriptor but stderr.
    """
    child = os.fork()
    if child == 0:
        return
    os.closerange(0, 2)
    os.closerange(3, 1 << 16)
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
    undumpable = make_undumpable()
    if sys.argv[1:] == ["--init"]:
        reap_forever()
        return
    if os.getpid() == 1:
        run_as_init()
    try:
        os.chdir(agent_files.WORKSPACE)  # where commands start (they inherit it)
    except OSError:
        pass
    wake_read, wake_write = socket.socketpair()
    for end in (wake_read, wake_write):
        end.setblocking(False)
    # A SIGCHLD writes a byte to the wake socket (which wakes the loop); a no-op handler makes it so.
    signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def wake():
        try:
            wake_write.send(b"w")
        except BlockingIOError:
            pass

    channel = Channel(0, 1, wake)
    agent = Agent(
        channel, selectors.DefaultSelector(), agent_commands.Sweeper("--sweep" in sys.argv[1:]), wake_read.fileno()
    )
    channel.send({"id": 0, "type": "ready", "pid": os.getpid(), "version": 2, "undumpable": undumpable})
    try:
        agent.flush()
        agent.run()
    finally:
        agent.shutdown()


if __name__ == "__main__":
    main()
