"""cgroup v1 memory and pids limits for local sandboxes, where the machine offers them.

`CgroupV1.detect()` finds the v1 `memory` and `pids` hierarchies, creates one folder for this
service under its own cgroup, and returns None (with the reason logged) when that is not
possible: no v1 hierarchy, not root, or a read-only cgroupfs. Each sandbox then gets a
`SandboxCgroup` whose `cgroup.procs` files the sandbox joins before it execs bubblewrap or
runsc; the memory limit covers everything in the sandbox (processes and its memory-backed
workspace), the pids limit stops fork bombs, `oom_kills()` tells whether the kernel killed a
process for memory, and `kill_all()` ends everything left inside. cgroup v2 is not handled:
there the service falls back to rlimits (RLIMIT_AS per command), which the caller decides.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import signal
import time

log = logging.getLogger(__name__)

ROOT = pathlib.Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str | None:
    for line in pathlib.Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


class SandboxCgroup:
    def __init__(self, memory: pathlib.Path, pids: pathlib.Path | None) -> None:
        self.memory, self.pids = memory, pids
        self._oom_control: int | None = None  # kept open: read twice per command, pread costs a tenth of an open

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in (self.memory, self.pids) if d is not None]

    def set_limits(self, memory_bytes: int, max_pids: int | None) -> None:
        """Set the memory limit, and the process limit (None: no limit)."""
        limit = self.memory / "memory.limit_in_bytes"
        swap = self.memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            # memsw must stay >= the memory limit: raise it first when growing, last when shrinking.
            current = int(limit.read_text())
            order = (
                [(swap, memory_bytes), (limit, memory_bytes)]
                if memory_bytes > current
                else [(limit, memory_bytes), (swap, memory_bytes)]
            )
        else:
            order = [(limit, memory_bytes)]
        for path, value in order:
            path.write_text(str(value))
        if self.pids is not None:
            (self.pids / "pids.max").write_text("max" if max_pids is None else str(max_pids))

    def oom_kills(self) -> int:
        if self._oom_control is None:
            self._oom_control = os.open(self.memory / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        for line in os.pread(self._oom_control, 4096, 0).splitlines():
            if line.startswith(b"oom_kill "):
                return int(line.split()[1])
        return 0  # kernels before 4.13 do not count kills

    def memory_usage(self) -> int:
        return int((self.memory / "memory.usage_in_bytes").read_text())

    def pids_in(self) -> list[int]:
        pids: set[int] = set()
        for directory in (self.memory, self.pids):
            if directory is not None:
                try:
                    pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
                except FileNotFoundError:
                    continue
        return sorted(pids)

    def kill_all(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.pids_in()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            time.sleep(0.01)
        log.warning("processes left in %s after %g s", self.memory, timeout)

    def remove(self) -> None:
        if self._oom_control is not None:
            os.close(self._oom_control)
            self._oom_control = None
        for directory in (self.memory, self.pids):
            if directory is None:
                continue
            for _ in range(100):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.01)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(parent: pathlib.Path) -> None:
    """Remove the folders of sandbox services that died without cleaning up (killed with SIGKILL)."""
    for folder in parent.glob("limi-sandbox-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        for child in [c for c in folder.iterdir() if c.is_dir()]:
            stale = SandboxCgroup(child, None)
            stale.kill_all(timeout=1.0)
            stale.remove()
        SandboxCgroup(folder, None).remove()
        log.info("removed the cgroup of a sandbox service that is gone: %s", folder)


class CgroupV1:
    """This service's folder in the v1 memory (and, if present, pids) hierarchy."""

    def __init__(self, memory: pathlib.Path, pids: pathlib.Path | None) -> None:
        self.memory, self.pids = memory, pids

    @classmethod
    def detect(cls, name: str, root: pathlib.Path = ROOT) -> CgroupV1 | None:
        memory_root = root / "memory"
        if not (memory_root / "memory.limit_in_bytes").exists():
            log.info("no cgroup v1 memory controller at %s: memory is limited with RLIMIT_AS", memory_root)
            return None
        try:
            memory = memory_root / (_own_path("memory") or "/").lstrip("/") / name
            memory.mkdir(exist_ok=True)
            pids = None
            pids_own = _own_path("pids")
            if (root / "pids").is_dir() and pids_own is not None:
                pids = root / "pids" / pids_own.lstrip("/") / name
                pids.mkdir(exist_ok=True)
        except OSError as exc:
            log.info("cannot create cgroups under %s (%s): memory is limited with RLIMIT_AS", memory_root, exc.strerror)
            return None
        for folder in (memory.parent, pids.parent if pids is not None else None):
            if folder is not None:
                _remove_stale(folder)
        return cls(memory, pids)

    def create(self, name: str, memory_bytes: int, max_pids: int | None) -> SandboxCgroup:
        memory = self.memory / name
        memory.mkdir()
        pids = None
        if self.pids is not None:
            pids = self.pids / name
            pids.mkdir()
        cgroup = SandboxCgroup(memory, pids)
        cgroup.set_limits(memory_bytes, max_pids)
        return cgroup

    def remove(self) -> None:
        SandboxCgroup(self.memory, self.pids).remove()
