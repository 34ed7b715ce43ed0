"""One training run at a time, from a durable queue, each in its own training process.

`RunSupervisor.submit` turns a request into a queued run (the run id derives from the dataset,
model, preset and hyperparameters, or from the caller's request id, so submitting twice names
the same run). A single loop starts the oldest queued run as `python -m limi_trainer.run_job`
(or under torchrun for several GPUs), follows its `progress.jsonl`, keeps the run record and
metrics current, and announces every completed checkpoint through `announce` (the server
publishes a `Checkpoint` event; unannounced checkpoints are retried later). A training process
that crashes is started again up to `max_attempts` times and resumes from its last checkpoint;
a process stopped by a service shutdown leaves its run queued for the next start. It knows
nothing about gRPC or NATS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pathlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from limi_core.errors import FailedPrecondition, NotFound, ResourceExhausted, Unavailable
from limi_trainer import checkpoints, hyperparameters, metrics, reporting
from limi_trainer.dataset import DatasetInput
from limi_trainer.lineage import checkpoint_id
from limi_trainer.run_config import RunConfig, code_revision, run_id_for
from limi_trainer.run_job import EXIT_INVALID_INPUT, PARENT_PID_VARIABLE
from limi_trainer.run_store import RunRecord, RunState, RunStore

log = logging.getLogger(__name__)

# Publishes the Checkpoint event of one checkpoint directory and returns the checkpoint id;
# raises Unavailable when the event could not be stored (it is tried again later).
Announcer = Callable[[RunRecord, pathlib.Path], Awaitable[str]]


class Interrupted(Exception):
    """The service is stopping before the awaited run finished."""


@dataclasses.dataclass(frozen=True)
class RunRequest:
    dataset: DatasetInput
    base_model: str
    preset: str
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)
    request_id: str = ""


class RunSupervisor:
    def __init__(
        self,
        store: RunStore,
        runs_dir: pathlib.Path,
        announce: Announcer,
        *,
        max_queued: int = 16,
        max_attempts: int = 3,
        poll_seconds: float = 0.5,
        gpus_per_run: int = 1,
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self._store, self._runs_dir, self._announce = store, runs_dir, announce
        self._max_queued, self._max_attempts, self._poll = max_queued, max_attempts, poll_seconds
        self._gpus, self._worker_env = gpus_per_run, dict(worker_env or {})
        self._runs: dict[str, RunRecord] = {}
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._active: str | None = None
        self._cancelling: set[str] = set()
        self._stopping = False
        self._loop_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the runs; runs that were running when the service stopped are queued to resume."""
        for run in self._store.all_runs():
            if run.state == RunState.RUNNING:
                run.state = RunState.QUEUED
                self._store.put(run)
            self._runs[run.id] = run
        self._update_queue_metric()
        self._loop_task = asyncio.create_task(self._loop(), name="trainer-supervisor")

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking runs; stop the training process (its run resumes at the next start)."""
        self._stopping = True
        await self._terminate(grace_seconds)
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self._notify()

    # ------------------------------------------------------------------ requests

    async def submit(self, request: RunRequest, *, retry_failed: bool = False) -> RunRecord:
        """Queue a run, or return the existing run with the same id.

        Args:
            retry_failed: Queue again an existing run that failed by crashing (it resumes).

        Raises:
            InvalidArgument: Unknown preset or bad hyperparameter.
            ResourceExhausted: The queue is full.
        """
        hp = hyperparameters.resolve(request.preset, request.overrides)
        run_id = run_id_for(request.dataset, request.base_model, request.preset, hp, request.request_id)
        existing = self._runs.get(run_id)
        if existing is not None:
            if retry_failed and existing.state == RunState.FAILED and existing.failure_kind == "crashed":
                existing.state, existing.crashes, existing.error, existing.failure_kind = RunState.QUEUED, 0, "", ""
                self._save(existing)
                await self._notify()
            return existing
        if sum(1 for run in self._runs.values() if run.state == RunState.QUEUED) >= self._max_queued:
            raise ResourceExhausted(f"{self._max_queued} runs are already queued; try again later")
        run_dir = self._runs_dir / run_id
        RunConfig(run_id, request.dataset, request.base_model, request.preset, hp, code_revision()).save(run_dir)
        run = RunRecord(
            id=run_id,
            state=RunState.QUEUED,
            dataset_id=request.dataset.dataset_id or request.dataset.uri,
            base_model=request.base_model,
            preset=request.preset,
            run_dir=str(run_dir),
            hyperparameters=hp.as_strings(),
            dataset_content_hash=request.dataset.content_hash,
        )
        self._store.create_once(run)
        self._runs[run_id] = run
        self._save(run)
        await self._notify()
        return run

    def get(self, run_id: str) -> RunRecord:
        if run_id not in self._runs:
            raise NotFound(f"no run {run_id!r}")
        return self._runs[run_id]

    def list(self) -> list[RunRecord]:
        return list(self._runs.values())

    def queue_position(self, run_id: str) -> int:
        queued = [run.id for run in self._runs.values() if run.state == RunState.QUEUED]
        return queued.index(run_id) + 1 if run_id in queued else 0

    async def cancel(self, run_id: str) -> RunRecord:
        run = self.get(run_id)
        if run.state.terminal:
            raise FailedPrecondition(f"run {run_id} already {run.state.value}")
        if run.state == RunState.QUEUED:
            self._finish(run, RunState.CANCELLED, error="cancelled before it started")
            await self._notify()
            return run
        self._cancelling.add(run_id)
        await self._terminate(grace_seconds=5.0)
        await self.wait_terminal(run_id, asyncio.Event())
        return run

    async def wait_terminal(self, run_id: str, stop: asyncio.Event) -> RunRecord:
        """Wait until the run finishes; raise `Interrupted` if `stop` is set or the service stops first."""
        async for run in self.watch(run_id, stop):
            if run.state.terminal:
                return run
        raise Interrupted(f"stopped while waiting for run {run_id}")

    async def watch(self, run_id: str, stop: asyncio.Event | None = None) -> AsyncIterator[RunRecord]:
        """Snapshots of the run: now, then after every change, until it is final or stopping."""
        self.get(run_id)
        stop = stop or asyncio.Event()
        last = None
        while True:
            current = dataclasses.replace(self._runs[run_id])
            if current.to_json() != last:
                last = current.to_json()
                yield current
            if current.state.terminal or self._stopping or stop.is_set():
                return
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=1.0)
                except TimeoutError:
                    pass

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        await self._announce_all_pending()
        while not self._stopping:
            self._wake.clear()
            run = next((r for r in self._runs.values() if r.state == RunState.QUEUED), None)
            if run is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=30.0)
                except TimeoutError:
                    await self._announce_all_pending()
                continue
            try:
                await self._run_one(run)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # recorded on the run; the queue keeps going with the next one
                log.exception("the run could not be supervised", extra={"fields": {"run": run.id}})
                self._finish(
                    run,
                    RunState.FAILED,
                    error=f"the trainer could not run it: {type(exc).__name__}: {exc}",
                    kind="crashed",
                )

    async def _run_one(self, run: RunRecord) -> None:
        run_dir = pathlib.Path(run.run_dir)
        run.state, run.started_at, run.error, run.failure_kind = RunState.RUNNING, time.time(), "", ""
        run.attempts += 1
        self._active = run.id
        self._save(run)
        await self._notify()
        offset = (
            (run_dir / reporting.PROGRESS_FILE).stat().st_size if (run_dir / reporting.PROGRESS_FILE).exists() else 0
        )
        metrics.RUNNING.set(1)
        try:
            with open(run_dir / "worker.log", "ab") as output:
                # No preexec_fn: a plain fork of this gRPC process can crash in gRPC's fork handlers, so
                # the child is spawned (vfork) and arranges to die with us itself (run_job.die_with_parent).
                self._process = await asyncio.create_subprocess_exec(
                    *self._command(run_dir),
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, **self._worker_env, PARENT_PID_VARIABLE: str(os.getpid())},
                )
            finished = False
            while not finished:
                try:
                    await asyncio.wait_for(self._process.wait(), timeout=self._poll)
                    finished = True
                except TimeoutError:
                    pass
                records, offset = reporting.read_progress(run_dir, offset)
                for record in records:
                    await self._apply(run, record)
                if records:
                    self._save(run)
                    await self._notify()
            await self._settle(run, self._process.returncode)
        finally:
            self._process, self._active = None, None
            metrics.RUNNING.set(0)
            self._cancelling.discard(run.id)
            await self._notify()

    def _command(self, run_dir: pathlib.Path) -> list[str]:
        if self._gpus > 1:
            return [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={self._gpus}",
                "-m",
                "limi_trainer.run_job",
                str(run_dir),
            ]
        return [sys.executable, "-m", "limi_trainer.run_job", str(run_dir)]

    async def _apply(self, run: RunRecord, record: dict) -> None:
        event = record.get("event")
        if event == "started":
            run.total_steps, run.packing_efficiency = record["total_steps"], record["packing_efficiency"]
            run.resumed_from_step, run.step = record["resumed_from_step"], record["resumed_from_step"]
            run.trained_trajectory_ids = record.get("trajectory_ids", [])
            if record.get("dropped") and run.attempts == 1:
                metrics.DROPPED_SAMPLES.inc(len(record["dropped"]))
        elif event == "step":
            run.step, run.total_steps, run.loss = record["step"], record["total_steps"], record["loss"]
            run.tokens_per_second, run.eta_seconds = record["tokens_per_second"], record["eta_seconds"]
        elif event == "checkpoint":
            await self._announce_pending(run)
        elif event == "finished":
            run.summary_path, run.loss_curve_path = record["summary"], record.get("loss_curve", "")
            run.loss = record.get("final_loss") or run.loss
        elif event == "failed":
            run.error, run.failure_kind = record.get("error", ""), record.get("kind", "crashed")
        metrics.observe_run(run)

    async def _settle(self, run: RunRecord, code: int | None) -> None:
        """The run's state once its training process ended with `code`."""
        if run.id in self._cancelling:
            metrics.PROCESSES.labels("cancelled").inc()
            self._finish(run, RunState.CANCELLED, error="cancelled while running")
            return
        if self._stopping:
            metrics.PROCESSES.labels("interrupted").inc()
            run.state = RunState.QUEUED  # resumes from its last checkpoint when the service starts again
            self._save(run)
            return
        await self._announce_pending(run)
        if code == 0 and run.summary_path:
            metrics.PROCESSES.labels("succeeded").inc()
            self._finish(run, RunState.SUCCEEDED)
        elif code == EXIT_INVALID_INPUT:
            metrics.PROCESSES.labels("invalid_input").inc()
            self._finish(
                run, RunState.FAILED, error=run.error or f"training process exited with {code}", kind="invalid_input"
            )
        else:
            metrics.PROCESSES.labels("crashed").inc()
            error = run.error or f"training process exited with {code} (see {pathlib.Path(run.run_dir) / 'worker.log'})"
            run.crashes += 1
            if run.crashes < self._max_attempts:
                log.warning(
                    "training process crashed; resuming",
                    extra={"fields": {"run": run.id, "crashes": run.crashes, "error": error}},
                )
                run.state, run.error = RunState.QUEUED, error
                self._save(run)
            else:
                self._finish(run, RunState.FAILED, error=error, kind="crashed")

    def _finish(self, run: RunRecord, state: RunState, *, error: str = "", kind: str = "") -> None:
        run.state, run.finished_at = state, time.time()
        run.error, run.failure_kind = error or (run.error if state == RunState.FAILED else ""), kind
        run.eta_seconds = 0.0
        metrics.RUNS.labels(state.value).inc()
        self._save(run)

    async def _terminate(self, grace_seconds: float) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=max(grace_seconds, 0.1))
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        except ProcessLookupError:
            return

    # ------------------------------------------------------------------ checkpoint events

    async def _announce_pending(self, run: RunRecord) -> None:
        for path in checkpoints.completed(pathlib.Path(run.run_dir)):
            state = checkpoints.read_state(path)
            if checkpoint_id(run.id, state.step) in run.checkpoint_ids:
                continue
            try:
                announced = await self._announce(run, path)
            except Unavailable as exc:  # retried by the loop later; the checkpoint itself is safe on disk
                log.warning(
                    "checkpoint announcement failed; will retry",
                    extra={"fields": {"run": run.id, "checkpoint": str(path), "error": f"{type(exc).__name__}: {exc}"}},
                )
                return
            run.checkpoint_ids.append(announced)
            metrics.CHECKPOINTS.inc()
            self._save(run)

    async def _announce_all_pending(self) -> None:
        for run in list(self._runs.values()):
            if run.state != RunState.RUNNING:
                await self._announce_pending(run)

    # ------------------------------------------------------------------ bookkeeping

    def _save(self, run: RunRecord) -> None:
        self._store.put(run)
        self._update_queue_metric()

    def _update_queue_metric(self) -> None:
        metrics.QUEUE_DEPTH.set(sum(1 for run in self._runs.values() if run.state == RunState.QUEUED))

    async def _notify(self) -> None:
        self._wake.set()
        async with self._changed:
            self._changed.notify_all()
