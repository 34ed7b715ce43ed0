"""The metric definitions on hand-computed examples, and the pass@k estimator against enumeration."""

from __future__ import annotations

import itertools
import math

import pytest

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi_evaluator import scores


def subtask(task: str, grades: list[float], pass_score: float = 6.0, tokens: float = 0.0) -> ev.TaskResult:
    """A subtask whose rounds got `grades` (the harness stops at the first pass)."""
    result = ev.TaskResult(task_id=task, subtask_id=f"s{len(grades)}")
    for number, grade in enumerate(grades, start=1):
        result.rounds.add(round=number, score=grade, passed=grade >= pass_score)
    result.score = max(grades)
    result.passed = any(r.passed for r in result.rounds)
    result.attempts = len(grades)
    result.metrics["tokens"] = tokens
    return result


def test_agencybench_v1_and_v2_metrics_on_a_worked_example():
    results = [
        subtask("a", [10.0], tokens=1000),  # passed in round 1
        subtask("a", [3.0, 7.0], tokens=2000),  # passed in round 2
        subtask("b", [2.0, 4.0, 5.0], tokens=3000),  # never passed
        subtask("b", [0.0, 0.0, 8.0], tokens=4000),  # passed in round 3
    ]
    m = scores.agentic_metrics(results, max_rounds=3)
    assert m["FTFC"] == pytest.approx(100 * (1.0 + 0.3 + 0.2 + 0.0) / 4)  # 37.5
    assert m["SR@3"] == pytest.approx(75.0)
    assert m["RC@3"] == pytest.approx(100 * ((3 - 1) / 2 + (3 - 2) / 2 + (3 - 3) / 2) / 3)  # 50.0
    assert m["Avg"] == pytest.approx((37.5 + 75.0 + 50.0) / 3)
    assert m["S_avg"] == pytest.approx(100 * (10 + 7 + 5 + 8) / 40)  # 75.0
    assert m["Att"] == pytest.approx((1 + 2 + 3 + 3) / 4)
    assert (m["Pass@1"], m["Pass@2"], m["Pass@3"]) == pytest.approx((25.0, 50.0, 75.0))
    assert m["Pass@3"] == m["SR@3"]
    assert m["S_avg/Att"] == pytest.approx(75.0 / 2.25)
    assert m["tokens"] == 10000 and m["S_avg/1Mtok"] == pytest.approx(75.0 / 0.01)
    assert (m["subtasks"], m["tasks"]) == (4.0, 2.0)


def test_limi_paper_average_is_the_mean_of_the_three():
    # LIMI_FACTS: (71.7 + 74.2 + 74.6) / 3 = 73.5; our Avg is that mean by definition.
    assert round((71.7 + 74.2 + 74.6) / 3, 1) == 73.5


def test_one_round_has_no_remaining_chances_and_empty_input_gives_nothing():
    m = scores.agentic_metrics([subtask("a", [10.0]), subtask("a", [4.0])], max_rounds=1)
    assert m["RC@1"] == 0.0 and m["SR@1"] == 50.0 and m["FTFC"] == pytest.approx(70.0)
    assert scores.agentic_metrics([], max_rounds=3) == {}


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    outcomes = [True] * c + [False] * (n - c)
    draws = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in draw) for draw in draws) / len(draws)


@pytest.mark.parametrize(
    "n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 1, 5), (7, 3, 7), (10, 4, 2), (10, 0, 4)]
)
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert scores.pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k))
    assert scores.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        scores.pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        scores.pass_at_k(3, 1, 4)


def test_code_metrics_average_over_problems_and_skip_k_beyond_the_samples():
    m = scores.code_metrics([(4, 4), (4, 1), (4, 0)], ks=(1, 2, 8))
    assert m["pass@1"] == pytest.approx(100 * (1 + 0.25 + 0) / 3)
    assert m["pass@2"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert "pass@8" not in m and m["problems"] == 3 and m["samples"] == 12
    assert scores.primary_metric(m) == "pass@1"
    assert scores.primary_metric({"FTFC": 1, "Avg": 2}) == "Avg"
