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
  size cap on every writable mount in every mode (/dev and the root are read-only), a
  wall-clock timeout, capped output, and every process a command leaves behind killed;
- new user namespaces inside a session (bwrap --disable-userns; a seccomp filter under gVisor);
- a session attacking the service through its own agent: the agent's channel is a Unix socket
  that commands cannot reopen, held only by a non-dumpable agent (no ptrace, no pidfd_getfd);
  and the service treats every frame as hostile anyway (agent_client.py: sizes, nesting,
  per-call budgets that count headers, backpressure instead of buffering, checked shapes), so
  a misbehaving agent ends only its own session, whose processes are killed and reaped;
- abuse of the API: size and content checks on every field, quotas on sessions, calls per session
  and concurrent commands (RESOURCE_EXHAUSTED), cancellation and deadlines that kill the command.

Does NOT protect against: kernel exploits through the bubblewrap backend (no seccomp filter; use
gvisor or a gVisor/Kata runtimeClass on Kubernetes for hostile code), CPU contention and timing
side channels between sessions, or a session's code killing or starving its own agent (same
uid: that ends or slows only its own session). One slow Exec stream holds back the other calls
of its session (one channel per sandbox) until its client reads. Under gVisor a command can
reopen the agent's ends of its session's own command pipes through /proc (gVisor ignores
dumpability there), and on Kubernetes the channel is the container runtime's exec pipes, which
a gVisor runtimeClass lets commands reopen the same way: in both cases the service's checks
above are what holds. See backends/bwrap.py for the details per layer.

Layout: server.py (wiring), servicer.py (gRPC edge), sessions.py and session.py (domain), pool.py,
request_log.py, limits.py, paths.py, tools.py, metrics.py, agent_client.py, backends/ (bwrap,
gvisor, kubernetes), inside/ (the agent that runs in every sandbox).
"""

import limi_core  # noqa: F401  first: it turns gRPC's fork handlers off before gRPC loads
