"""What the two local backends (bwrap, gVisor) share: the runtime folder, host uids, cgroups, launch.

`LocalRuntime` prepares, once per service process, a world-readable folder with the agent's
files, a synthetic /etc/passwd, /etc/group and /etc/hosts, and an empty root for gVisor; it finds
the cgroup v1 controllers (cgroups.py) and, when the service runs as root, hands each sandbox
its own unprivileged host uid, so that even an escaped process owns nothing on the host and
cannot signal another session (this needs util-linux's `setpriv`). `launch()` starts the sandbox's outermost command with a minimal
environment (nothing of the service's own environment reaches the sandbox), in its cgroup
before it execs, with a Unix socket to the agent on its stdin and stdout (a socket, because a
pipe could be reopened through /proc by the sandbox's other processes); `LocalSandbox.close()`
kills what is left in the cgroup, reaps, and frees the uid, and runs by itself as soon as the
agent exits or breaks the protocol. It does not build the sandbox command line (bwrap.py,
gvisor.py do).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from limi_core.errors import Unavailable
from limi_sandbox import metrics
from limi_sandbox.agent_client import AgentClient
from limi_sandbox.backends import Sandbox, SandboxSpec
from limi_sandbox.cgroups import CgroupV1, SandboxCgroup, process_alive
from limi_sandbox.limits import SessionLimits

log = logging.getLogger(__name__)

INSIDE = pathlib.Path(__file__).resolve().parent.parent / "inside"
AGENT_FILES = ("agent.py", "agent_commands.py", "agent_files.py")
# Inside every sandbox: the agent's folder, the workspace, and who the sandbox user is.
AGENT_DIR, WORKSPACE, SANDBOX_UID = "/opt/limi", "/workspace", 65534
LAUNCH_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": WORKSPACE,
    "USER": "sandbox",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "TERM": "dumb",
}
# Processes the agent itself may need beyond a command's own limit (its threads, grep).
PID_HEADROOM = 64
STDERR_TAIL = 4096


def cgroup_limits(limits: SessionLimits, memory_overhead: int, limit_pids: bool) -> tuple[int, int | None]:
    return limits.memory_bytes + memory_overhead, (limits.max_processes + PID_HEADROOM if limit_pids else None)


class UidPool:
    """Host uids for sandboxes, one per live sandbox, from a range no real user has."""

    def __init__(self, base: int, count: int) -> None:
        self.base, self.count = base, count
        self._next = random.randrange(count)
        self._taken: set[int] = set()

    def acquire(self) -> int:
        for _ in range(self.count):
            uid = self.base + self._next
            self._next = (self._next + 1) % self.count
            if uid not in self._taken:
                self._taken.add(uid)
                return uid
        raise Unavailable(f"all {self.count} sandbox uids are in use")

    def release(self, uid: int) -> None:
        self._taken.discard(uid)


def _remove_stale_runtime_dirs(temp: pathlib.Path) -> None:
    """Runtime folders of sandbox services that died without cleaning up (their pid is in the name)."""
    for folder in temp.glob("limi-sandbox-*-*"):
        pid = folder.name.split("-")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


class LocalRuntime:
    def __init__(self, runtime_dir: str, use_cgroups: bool, uid_base: int, uid_count: int) -> None:
        self.is_root = os.geteuid() == 0
        self._owned = not runtime_dir
        if not runtime_dir:
            _remove_stale_runtime_dirs(pathlib.Path(tempfile.gettempdir()))
        self.root = pathlib.Path(runtime_dir or tempfile.mkdtemp(prefix=f"limi-sandbox-{os.getpid()}-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.agent_dir = self.root / "agent"
        self.etc_dir = self.root / "etc"
        self.gvisor_root = self.root / "gvisor-root"
        for directory in (self.agent_dir, self.etc_dir, self.gvisor_root):
            directory.mkdir(exist_ok=True)
            directory.chmod(0o755)
        for name in AGENT_FILES:
            target = self.agent_dir / name
            shutil.copyfile(INSIDE / name, target)
            target.chmod(0o644)
        files = {
            "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{WORKSPACE}:/bin/sh\n",
            "group": f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n",
            "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
        }
        for name, text in files.items():
            (self.etc_dir / name).write_text(text)
            (self.etc_dir / name).chmod(0o644)
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            link = self.gvisor_root / name
            if os.path.islink("/" + name) and not os.path.lexists(link):
                link.symlink_to(os.readlink("/" + name))
        self.cgroups = CgroupV1.detect(f"limi-sandbox-{os.getpid()}") if use_cgroups and self.is_root else None
        self.setpriv = shutil.which("setpriv")
        self.uids = UidPool(uid_base, uid_count) if self.is_root and self.setpriv else None
        self._warned_dumpable = False
        log.info(
            "local sandboxes: memory limited by %s, %s",
            "cgroup v1" if self.cgroups else "RLIMIT_AS per command",
            "one host uid per sandbox" if self.uids else "the service's own uid",
        )

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.remove()
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)

    async def launch(
        self,
        backend: str,
        argv: list[str],
        name: str,
        spec: SandboxSpec,
        *,
        memory_overhead: int,
        limit_pids: bool,
        drop_privileges: bool,
        use_address_space: bool,
        start_timeout: float,
        on_close=None,
    ) -> LocalSandbox:
        """Start `argv` as a sandbox and wait for its agent; Unavailable with its stderr when it fails.

        The sandbox's cgroup (where there is one) gets the session's memory plus `memory_overhead`,
        and, with `limit_pids`, its processes plus the agent's headroom.
        """
        started = time.perf_counter()
        cgroup = None
        if self.cgroups is not None:
            cgroup = self.cgroups.create(name, *cgroup_limits(spec.limits, memory_overhead, limit_pids))
        uid = self.uids.acquire() if drop_privileges and self.uids is not None else None
        try:
            if uid is not None:
                # setpriv rather than Popen(user=...): Popen then keeps its vfork path, which neither
                # copies the service's memory nor runs gRPC's fork handlers.
                argv = [self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]
            if cgroup is not None:
                files = cgroup.procs_files
                joins = "".join(f'echo $$ > "${i}" || exit 121; ' for i in range(1, len(files) + 1))
                argv = ["/bin/sh", "-c", f'{joins}shift {len(files)}; exec "$@"', "limi-join", *files, *argv]
            # The agent's channel (stdin and stdout) and its stderr are Unix sockets: unlike a pipe, no
            # process in the sandbox can reopen them through /proc/<agent>/fd (not even under gVisor).
            channel, channel_inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            errors, errors_inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=channel_inside,
                    stdout=channel_inside,
                    stderr=errors_inside,
                    env=LAUNCH_ENV,
                    cwd="/",
                    close_fds=True,
                    start_new_session=True,
                )
            except BaseException:
                channel.close()
                errors.close()
                raise
            finally:
                channel_inside.close()
                errors_inside.close()
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            if uid is not None:
                self.uids.release(uid)
            raise
        sandbox = await LocalSandbox.connect(
            self, backend, name, spec, process, channel, errors, cgroup, uid, use_address_space, on_close
        )
        sandbox.memory_overhead, sandbox.limit_pids = memory_overhead, limit_pids
        try:
            ready = await sandbox.agent.wait_ready(start_timeout)
            if not ready.get("undumpable") and not self._warned_dumpable:
                self._warned_dumpable = True
                log.warning(
                    "the %s agent could not make itself non-dumpable: commands could reach its channel", backend
                )
        except BaseException as exc:  # a timeout, a dead agent, or a cancelled start: nothing may leak
            await sandbox.close()
            if not isinstance(exc, Exception):
                raise
            reason = sandbox.stderr_tail() or str(exc) or type(exc).__name__
            raise Unavailable(f"the {backend} sandbox did not start: {reason.strip()[-600:]}") from None
        metrics.SANDBOX_START_SECONDS.labels(backend).observe(time.perf_counter() - started)
        return sandbox


class LocalSandbox(Sandbox):
    def __init__(
        self,
        runtime: LocalRuntime,
        backend: str,
        name: str,
        spec: SandboxSpec,
        process: subprocess.Popen,
        cgroup: SandboxCgroup | None,
        uid: int | None,
        use_address_space: bool,
        on_close,
    ) -> None:
        self.runtime, self.backend, self.name, self.spec = runtime, backend, name, spec
        self.process, self.cgroup, self.uid = process, cgroup, uid
        self.use_address_space = use_address_space
        self._on_close = on_close
        self.memory_overhead, self.limit_pids = 0, True
        self._stderr = bytearray()
        self._closing: asyncio.Future | None = None

    @classmethod
    async def connect(
        cls,
        runtime,
        backend,
        name,
        spec,
        process,
        channel: socket.socket,
        errors: socket.socket,
        cgroup,
        uid,
        use_address_space,
        on_close,
    ) -> LocalSandbox:
        sandbox = cls(runtime, backend, name, spec, process, cgroup, uid, use_address_space, on_close)
        reader, writer = await asyncio.open_unix_connection(sock=channel, limit=1 << 16)
        sandbox.agent = AgentClient(reader, writer, name, on_gone=sandbox.agent_gone)
        sandbox._stderr_task = asyncio.create_task(sandbox._keep_stderr_tail(errors))
        return sandbox

    async def _keep_stderr_tail(self, errors: socket.socket) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=errors, limit=1 << 16)
        try:
            while chunk := await reader.read(65536):
                self._stderr = (self._stderr + chunk)[-STDERR_TAIL:]
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    def apply_limits(self, limits: SessionLimits) -> None:
        if self.cgroup is None:
            return
        try:
            self.cgroup.set_limits(*cgroup_limits(limits, self.memory_overhead, self.limit_pids))
        except OSError:
            if self._closing is None:
                raise
            raise Unavailable(f"sandbox {self.name} ended while it was being prepared; retry") from None

    def oom_kills(self) -> int | None:
        if self.cgroup is None or self._closing is not None:
            return None
        try:
            return self.cgroup.oom_kills()
        except OSError:  # removed by a close under way
            return None

    async def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        await self.agent.close()
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.kill_all)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        await asyncio.to_thread(self.process.wait)
        self._stderr_task.cancel()
        if self._on_close is not None:
            await self._on_close(self)
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.remove)
        if self.uid is not None:
            self.runtime.uids.release(self.uid)
