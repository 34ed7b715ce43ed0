"""limi sandbox service: isolated tool sessions for code nobody has read, and what they protect against.

Protects against, for code run in a session (model-generated commands, programs and files):
- reading or changing the host: each session is its own sandbox (bubblewrap namespaces, a gVisor
  kernel, or a locked-down Kubernetes pod) with a read-only system, a size-capped workspace, /tmp
  and /dev/shm of its own, an unprivileged uid without capabilities, and none of the service's
  environment or credentials; file tools refuse paths and links that leave the workspace;
- the network: no route anywhere (loopback of its own only; a default-deny NetworkPolicy on pods);
- other sessions: separate namespaces and filesystems, 128-bit random session ids;
- resource abuse: per-command rlimits (CPU seconds, processes, file size, open files), a memory
  and pids cgroup per sandbox where cgroup v1 exists (RLIMIT_AS per command otherwise), a
  wall-clock timeout, capped output, and every process a command leaves behind killed;
- abuse of the API: size and content checks on every field, quotas on sessions, calls per session
  and concurrent commands (RESOURCE_EXHAUSTED), cancellation and deadlines that kill the command.

Does NOT protect against: kernel exploits through the bubblewrap backend (no seccomp filter; use
gvisor or a gVisor/Kata runtimeClass on Kubernetes for hostile code), CPU contention and timing
side channels between sessions, or a session's code tampering with its own in-sandbox agent
(which only changes that session's answers). See backends/bwrap.py for the details per layer.

Layout: server.py (wiring), servicer.py (gRPC edge), sessions.py and session.py (domain), pool.py,
request_log.py, limits.py, paths.py, tools.py, metrics.py, agent_client.py, backends/ (bwrap,
gvisor, kubernetes), inside/ (the agent that runs in every sandbox).
"""

import limi_core  # noqa: F401  first: it turns gRPC's fork handlers off before gRPC loads
