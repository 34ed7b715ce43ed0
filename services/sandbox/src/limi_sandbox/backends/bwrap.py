"""The bubblewrap backend (the default on one machine): what a sandbox protects against, and what not.

Protects against, for code run in a session:
- reaching the host's files: a new mount namespace with only /usr (and the /bin, /lib links),
  a few harmless /etc files and the agent's folder, all read-only; /workspace, /tmp and /dev/shm
  are size-capped memory-backed tmpfs mounts that vanish with the sandbox, so nothing written
  lands on the host's disk or survives into another session; /dev (bwrap's own tmpfs) and the
  root are read-only, so every writable mount has a size cap, with or without a memory cgroup;
- privileges: a new user namespace where it runs as uid 65534 with no capabilities, mapped (when
  the service is root) to a host uid of its own from an unused range, with no further user
  namespaces allowed (`--disable-userns`) and NO_NEW_PRIVS;
- the network: a new network namespace with only its own loopback (nothing on the host, no
  metadata address, no DNS), and new pid, ipc, uts and cgroup namespaces (it cannot see or
  signal the host's or another session's processes);
- the service's secrets: bubblewrap is started with a three-variable environment, so neither
  the sandbox's environment nor /proc/1/environ holds anything of the service's;
- resource abuse: per command rlimits (CPU seconds, processes, file size, open files, and
  address space where no memory cgroup exists), a cgroup v1 memory and pids limit on the whole
  sandbox where the machine has them, a wall-clock timeout that kills the process group, and
  the agent's sweep of anything left behind; `--die-with-parent` and the pid namespace end every
  process when the sandbox is closed;
- its own agent's channel: the agent runs as the namespace's pid 1 (`--as-pid-1`: bwrap's own
  init would keep a copy of the channel that commands could take) and makes itself
  non-dumpable, so commands of the same uid can neither ptrace it nor `pidfd_getfd` its socket.

Does NOT protect against: kernel exploits (the sandbox shares the host kernel and no seccomp
filter is installed; use the gVisor backend for untrusted code that may attack the kernel),
CPU contention between sessions (no CPU quota, only CPU-seconds limits), timing side channels,
or code reading the host's /usr (it is visible on purpose). Without cgroup v1 (cgroup v2 hosts,
or a non-root service) memory is limited per process by RLIMIT_AS, not per sandbox.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from limi_sandbox.backends import Backend, Sandbox, SandboxSpec
from limi_sandbox.backends.local import AGENT_DIR, SANDBOX_ENV, SANDBOX_UID, WORKSPACE, LocalRuntime
from limi_sandbox.limits import SessionLimits

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Host /etc entries a shell and Python want; none holds a secret.
ETC_ENTRIES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "bash.bashrc",
    "inputrc",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "profile",
    "magic",
    "magic.mime",
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
)


def bwrap_command(
    bwrap: str,
    runtime_etc: str,
    agent_dir: str,
    python: str,
    limits: SessionLimits,
    tmp_bytes: int,
    disable_userns: bool = True,
) -> list[str]:
    """The bubblewrap command line that starts the agent in a new sandbox (a pure function)."""
    argv = [bwrap, "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    if disable_userns:
        argv.append("--disable-userns")
    argv += [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
    ]
    for name in SYSTEM_DIRS:
        path = "/" + name
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--dir", "/etc"]
    for name in ETC_ENTRIES:
        if os.path.lexists("/etc/" + name):
            argv += ["--ro-bind-try", "/etc/" + name, "/etc/" + name]
    for name in ("passwd", "group", "hosts"):
        argv += ["--ro-bind", f"{runtime_etc}/{name}", f"/etc/{name}"]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/tmp",
        "--perms",
        "1777",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/dev/shm",
        "--perms",
        "0755",
        "--size",
        str(limits.workspace_bytes),
        "--tmpfs",
        WORKSPACE,
        "--ro-bind",
        agent_dir,
        AGENT_DIR,
        # bwrap's /dev is a tmpfs with no size cap that the sandbox user owns: read-only, it still
        # serves its device nodes, and /dev/shm (mounted above, capped) stays writable.
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        WORKSPACE,
        "--clearenv",
    ]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    return argv + ["--", python, "-I", "-S", f"{AGENT_DIR}/agent.py", "--sweep"]


class BwrapBackend(Backend):
    name = "bwrap"

    def __init__(
        self, runtime: LocalRuntime, bwrap_path: str, python_path: str, tmp_bytes: int, start_timeout: float
    ) -> None:
        self.runtime, self.python, self.tmp_bytes, self.start_timeout = runtime, python_path, tmp_bytes, start_timeout
        self.bwrap = shutil.which(bwrap_path)
        self.disable_userns = self.bwrap is not None and "--disable-userns" in _help_text(self.bwrap)

    def unavailable_reason(self) -> str | None:
        if self.bwrap is None:
            return "bubblewrap (bwrap) is not installed; run scripts/setup"
        if not os.access(self.python, os.X_OK) or not self.python.startswith("/usr/"):
            return f"the sandbox's Python {self.python} must be an executable under /usr"
        return None

    async def start(self, spec: SandboxSpec, name: str) -> Sandbox:
        argv = bwrap_command(
            self.bwrap,
            str(self.runtime.etc_dir),
            str(self.runtime.agent_dir),
            self.python,
            spec.limits,
            self.tmp_bytes,
            self.disable_userns,
        )
        return await self.runtime.launch(
            self.name,
            argv,
            name,
            spec,
            memory_overhead=0,
            limit_pids=True,
            drop_privileges=True,
            use_address_space=self.runtime.cgroups is None,
            start_timeout=self.start_timeout,
        )


def _help_text(bwrap: str) -> str:
    result = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    return result.stdout + result.stderr
