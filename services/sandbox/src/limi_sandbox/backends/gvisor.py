"""The gVisor backend (`runsc`): the bwrap sandbox's layout behind a user-space kernel.

Each sandbox is an OCI bundle run with `runsc run --network=none`: the same read-only /usr,
/etc files and agent folder as bwrap, size-capped tmpfs /workspace, /tmp and /dev/shm (gVisor's
own /dev is root's and read-only to the sandbox user), uid 65534 with no capabilities and
NO_NEW_PRIVS, new pid/ipc/uts/mount namespaces, loopback only, and a seccomp filter, applied by
gVisor (--oci-seccomp), that refuses new user namespaces as bwrap does.
System calls are served by gVisor's Sentry rather than the host kernel, which removes most of
the kernel attack surface that bwrap leaves open. Memory: gVisor keeps the sandbox's memory in
the Sentry, so each command gets RLIMIT_AS (enforced by gVisor) and the host cgroup around the
whole sandbox gets the session's memory plus the Sentry's overhead as a backstop; no pids
cgroup (the Sentry's own threads would count), processes are limited by RLIMIT_NPROC inside.
It does not use runsc's cgroup support (--ignore-cgroups) and needs root or --rootless.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil

from limi_sandbox.backends import Backend, Sandbox, SandboxSpec
from limi_sandbox.backends.bwrap import ETC_ENTRIES
from limi_sandbox.backends.local import AGENT_DIR, SANDBOX_ENV, SANDBOX_UID, WORKSPACE, LocalRuntime, LocalSandbox
from limi_sandbox.limits import SessionLimits

SENTRY_OVERHEAD_BYTES = 512 << 20
CLONE_NEWUSER = 0x10000000
# Applied by gVisor to the sandbox's processes (--oci-seccomp): no new user namespace, as bwrap's
# --disable-userns. clone3 needs no rule: gVisor does not implement it (ENOSYS, and glibc then
# falls back to clone); a rule would answer EPERM, since gVisor ignores errnoRet, and break threads.
NO_USER_NAMESPACES = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
    "syscalls": [
        {
            "names": ["unshare", "clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ],
}


def oci_config(runtime_etc: str, agent_dir: str, root: str, python: str, limits: SessionLimits, tmp_bytes: int) -> dict:
    """The OCI runtime config of one gVisor sandbox (a pure function)."""

    def bind(source: str, destination: str) -> dict:
        return {
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", "ro", "nosuid", "nodev"],
        }

    def tmpfs(destination: str, size: int, mode: str) -> dict:
        return {
            "destination": destination,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", f"size={size}", f"mode={mode}"],
        }

    mounts = [{"destination": "/proc", "type": "proc", "source": "proc"}, bind("/usr", "/usr")]
    mounts += [bind("/etc/" + name, "/etc/" + name) for name in ETC_ENTRIES if os.path.exists("/etc/" + name)]
    mounts += [bind(f"{runtime_etc}/{name}", f"/etc/{name}") for name in ("passwd", "group", "hosts")]
    mounts += [
        bind(agent_dir, AGENT_DIR),
        tmpfs("/tmp", tmp_bytes, "1777"),
        tmpfs("/dev/shm", tmp_bytes, "1777"),
        tmpfs(WORKSPACE, limits.workspace_bytes, "1777"),
    ]
    no_capabilities = {key: [] for key in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_UID},
            "cwd": WORKSPACE,
            "args": [python, "-I", "-S", f"{AGENT_DIR}/agent.py", "--sweep"],
            "env": [f"{key}={value}" for key, value in SANDBOX_ENV.items()],
            "noNewPrivileges": True,
            "capabilities": no_capabilities,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}],
        },
        "root": {"path": root, "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")],
            "seccomp": NO_USER_NAMESPACES,
        },
    }


class GvisorBackend(Backend):
    name = "gvisor"

    def __init__(
        self, runtime: LocalRuntime, runsc_path: str, python_path: str, tmp_bytes: int, start_timeout: float
    ) -> None:
        self.runtime, self.python, self.tmp_bytes, self.start_timeout = runtime, python_path, tmp_bytes, start_timeout
        self.runsc = shutil.which(runsc_path)
        self.state_dir = runtime.root / "gvisor-state"
        self.bundles = runtime.root / "gvisor-bundles"

    def unavailable_reason(self) -> str | None:
        if self.runsc is None:
            return "gVisor (runsc) is not installed on this machine"
        return None

    def _global_flags(self) -> list[str]:
        flags = [self.runsc, "--network=none", "--oci-seccomp", "--ignore-cgroups", f"--root={self.state_dir}"]
        return flags if self.runtime.is_root else flags + ["--rootless"]

    async def start(self, spec: SandboxSpec, name: str) -> Sandbox:
        bundle = self.bundles / name
        bundle.mkdir(parents=True)
        self.state_dir.mkdir(exist_ok=True)
        config = oci_config(
            str(self.runtime.etc_dir),
            str(self.runtime.agent_dir),
            str(self.runtime.gvisor_root),
            self.python,
            spec.limits,
            self.tmp_bytes,
        )
        (bundle / "config.json").write_text(json.dumps(config))
        argv = self._global_flags() + ["run", f"--bundle={bundle}", name]
        return await self.runtime.launch(
            self.name,
            argv,
            name,
            spec,
            memory_overhead=SENTRY_OVERHEAD_BYTES,
            limit_pids=False,
            drop_privileges=False,
            use_address_space=True,
            start_timeout=self.start_timeout,
            on_close=self._delete,
        )

    async def _delete(self, sandbox: LocalSandbox) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._global_flags(),
            "delete",
            "--force",
            sandbox.name,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await process.wait()
        shutil.rmtree(self.bundles / sandbox.name, ignore_errors=True)

    async def stop(self) -> None:
        for path in (self.state_dir, self.bundles):
            shutil.rmtree(pathlib.Path(path), ignore_errors=True)
