"""The numbers: AgencyBench v1 and v2 metrics over subtask results, and pass@k for code benchmarks.

Inputs are `TaskResult` protos, one per subtask, whose `rounds` hold the rubric grade (0-10) of
each round in order and stop at the first passing round. With R the maximum number of rounds:
- FTFC = 100 * mean(first-round grade / 10): the share of requirements met in the first round;
- SR@R = 100 * share of subtasks passed within R rounds;
- RC@R = 100 * mean over passed subtasks of (R - rounds used) / (R - 1) (0 when R = 1 or none passed);
- Avg = (FTFC + SR@R + RC@R) / 3;
- S_avg = 100 * mean(best grade / 10); Att = mean rounds used; Pass@k = 100 * share passed within k
  rounds (k = 1..R, so Pass@R = SR@R); S_avg/Att; S_avg/1Mtok = S_avg per million policy tokens.
`pass_at_k(n, c, k)` is the unbiased estimator 1 - C(n-c, k) / C(n, k) of the Codex paper.
The definitions are also in the evaluator's README. Nothing here runs anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from limi.evaluation.v1 import evaluation_pb2 as ev


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples passes) from n samples with c passing.

    Raises:
        ValueError: unless 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def rounds_used(result: ev.TaskResult) -> int:
    return len(result.rounds) or result.attempts


def first_round_grade(result: ev.TaskResult) -> float:
    return result.rounds[0].score if result.rounds else 0.0


def passed_within(result: ev.TaskResult, k: int) -> bool:
    return any(r.passed for r in result.rounds[:k])


def agentic_metrics(results: Sequence[ev.TaskResult], max_rounds: int) -> dict[str, float]:
    """FTFC, SR@R, RC@R, Avg (v1) and S_avg, Att, Pass@k, efficiencies (v2), all in percent but Att."""
    if not results:
        return {}
    r = max_rounds
    passed = [res for res in results if passed_within(res, r)]
    ftfc = 100.0 * _mean(first_round_grade(res) / 10.0 for res in results)
    sr = 100.0 * len(passed) / len(results)
    rc = 100.0 * _mean((r - rounds_used(res)) / (r - 1) for res in passed) if r > 1 else 0.0
    s_avg = 100.0 * _mean(res.score / 10.0 for res in results)
    attempts = _mean(rounds_used(res) for res in results)
    tokens = sum(res.metrics.get("tokens", 0.0) for res in results)
    metrics = {
        "FTFC": ftfc,
        f"SR@{r}": sr,
        f"RC@{r}": rc,
        "Avg": (ftfc + sr + rc) / 3.0,
        "S_avg": s_avg,
        "Att": attempts,
        "S_avg/Att": s_avg / attempts if attempts else 0.0,
        "tokens": tokens,
        "subtasks": float(len(results)),
        "tasks": float(len({res.task_id for res in results})),
    }
    if tokens:
        metrics["S_avg/1Mtok"] = s_avg / (tokens / 1e6)
    for k in range(1, r + 1):
        metrics[f"Pass@{k}"] = 100.0 * sum(passed_within(res, k) for res in results) / len(results)
    return metrics


def code_metrics(samples: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """pass@k in percent over problems from (n, c) per problem, for every k <= the smallest n."""
    if not samples:
        return {}
    smallest = min(n for n, _c in samples)
    metrics = {"problems": float(len(samples)), "samples": float(sum(n for n, _c in samples))}
    for k in sorted(set(ks)):
        if 1 <= k <= smallest:
            metrics[f"pass@{k}"] = 100.0 * _mean(pass_at_k(n, c, k) for n, c in samples)
    return metrics


def primary_metric(aggregate: dict[str, float] | object) -> str:
    """The headline number of an aggregate: Avg for multi-round suites, pass@1 for code."""
    keys = set(aggregate)
    for name in ("Avg", "pass@1"):
        if name in keys:
            return name
    return sorted(keys)[0] if keys else ""
