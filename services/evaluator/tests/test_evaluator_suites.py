"""Suite files, the AgencyBench v2 loader, the workspace-basics family and its scripted expert (no processes)."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from limi_core.errors import FailedPrecondition, InvalidArgument
from limi_evaluator import basics
from limi_evaluator.agencybench import load_v2_scenarios, split_sections
from limi_evaluator.catalog import Catalog
from limi_evaluator.settings import DEFAULT_BENCHMARKS_DIR
from limi_evaluator.suite import SuiteError
from limi_testing.expert import DONE, UNKNOWN, expert_reply

BENCHMARKS = DEFAULT_BENCHMARKS_DIR


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(BENCHMARKS, tmp_path)


def write(folder: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_written_out_suite_file_loads(catalog, tmp_path):
    write(
        tmp_path,
        "mine.toml",
        """
name = "mine"
max_rounds = 2
pass_score = 8
[[tasks]]
id = "greet"
files = { "in/name.txt" = "Ada" }
[[tasks.subtasks]]
id = "1"
query = "Write a greeting for the name in in/name.txt to out/greeting.txt"
deliverables = ["out/greeting.txt"]
[[tasks.subtasks.checks]]
name = "greeting written"
command = "cat out/greeting.txt"
stdout_contains = ["Hello", "Ada"]
weight = 3
[[tasks.subtasks.checks]]
name = "share of lines that are non-empty"
python = "print(1.0)"
score_from_stdout = true
""",
    )
    assert "mine" in catalog.names()
    suite = catalog.load_suite(catalog.resolve("mine"))
    assert (suite.name, suite.max_rounds, suite.pass_score) == ("mine", 2, 8.0)
    task = suite.tasks[0]
    assert task.files == (("in/name.txt", b"Ada"),)
    first, second = task.subtasks[0].checks
    assert first.stdout_contains == ("Hello", "Ada") and first.weight == 3.0 and first.expect_exit == 0
    assert second.score_from_stdout and second.python == "print(1.0)"
    assert catalog.load_suite(catalog.resolve(str(tmp_path / "mine.toml"))).name == "mine"


@pytest.mark.parametrize(
    "text, field, reason",
    [
        (
            'name = "x"\n[[tasks]]\nid = "t"\n[[tasks.subtasks]]\nid = "1"\nquery = "q"\n[[tasks.subtasks.checks]]\nname = "c"\ncommand = "true"\nweight = -1\n',
            "tasks[0].subtasks[0].checks[0].weight",
            "must be positive",
        ),
        (
            'name = "x"\n[[tasks]]\nid = "t"\n[[tasks.subtasks]]\nid = "1"\nquery = "q"\n[[tasks.subtasks.checks]]\nname = "c"\n',
            "tasks[0].subtasks[0].checks[0]",
            "exactly one of command or python",
        ),
        ('name = "x"\n[[tasks]]\nid = "t"\nsubtasks = []\n', "tasks[0].subtasks", "at least one subtask"),
        ('name = "x"\nrounds = 3\n[[tasks]]\nid = "t"\n', "rounds", "unknown key"),
        ('name = "bad name!"\n', "name", "letters, digits"),
        ('name = "x"\n[generate]\nfamily = "nope"\n', "generate.family", "unknown task family"),
        (
            'name = "x"\n[[tasks]]\nid = "t"\nfiles = { "../escape" = "x" }\n[[tasks.subtasks]]\nid = "1"\nquery = "q"\n',
            "tasks[0].files.../escape",
            "relative path inside the workspace",
        ),
        (
            'name = "x"\n[[tasks]]\nid = "t"\n[[tasks.subtasks]]\nid = "1"\nquery = "q"\n[[tasks.subtasks]]\nid = "1"\nquery = "r"\n',
            "tasks[0].subtasks[1].id",
            "used twice",
        ),
    ],
)
def test_a_broken_suite_names_the_file_and_the_field(catalog, tmp_path, text, field, reason):
    path = write(tmp_path, "broken.toml", text)
    with pytest.raises(SuiteError) as caught:
        catalog.load_suite(catalog.resolve(str(path)))
    assert caught.value.field == f"{path}: {field}"
    assert reason in caught.value.reason


def test_invalid_toml_and_json_give_line_numbers(catalog, tmp_path):
    path = write(tmp_path, "syntax.toml", 'name = "x"\n[[tasks]\n')
    with pytest.raises(SuiteError, match=r"not valid TOML: .*line 2"):
        catalog.load_suite(catalog.resolve(str(path)))
    path = write(tmp_path, "syntax.json", '{"name": "x",\n "tasks": [}')
    with pytest.raises(SuiteError, match=r"not valid JSON: .*line 2"):
        catalog.load_suite(catalog.resolve(str(path)))


def test_unknown_benchmarks_list_the_known_ones(catalog, tmp_path):
    with pytest.raises(InvalidArgument) as caught:
        catalog.resolve("agencybench-v9")
    assert (
        caught.value.field == "benchmark"
        and "limi-basics" in caught.value.reason
        and "humaneval" in caught.value.reason
    )
    with pytest.raises(InvalidArgument, match="does not exist"):
        catalog.resolve(str(tmp_path / "missing.toml"))


def test_the_v2_loader_reads_all_scenarios_in_place():
    scenarios = load_v2_scenarios(BENCHMARKS / "agencybench-v2")
    assert (
        len(scenarios) == 32 and sum(len(s.subtasks) for s in scenarios) == 138
    )  # LIMI_FACTS: 138 tasks, 32 scenarios
    by_key = {s.key: s for s in scenarios}
    backend = by_key["Backend/scenario1"].subtasks[0]
    assert backend.query.startswith("Build the baseline CLI login/registration layer")
    assert "round(10 * (0.3*Score_B + 0.5*Score_P + 0.2*Score_M))" in backend.rubric
    assert "`Makefile`" in backend.deliverables
    research = by_key["Research/scenario2"].subtasks[0]  # stored as an object, not a string
    assert research.query and research.rubric and research.text.startswith("Query:")
    assert split_sections("Query:\nq\nDeliverables:\n- d\nRubric:\n- r") == {
        "query": "q",
        "deliverables": "- d",
        "rubric": "- r",
    }
    with pytest.raises(FailedPrecondition, match="LIMI_EVALUATOR_BENCHMARKS_DIR"):
        load_v2_scenarios(pathlib.Path("/nonexistent/agencybench-v2"))


def test_the_builtin_v2_suite_has_executable_rubrics_for_backend_and_code(catalog):
    suite = catalog.load_suite(catalog.resolve("agencybench-v2"))
    subtasks = [(t.label("agencybench_v2"), s) for t in suite.tasks for s in t.subtasks]
    assert len(subtasks) >= 5 and all(s.checks for _, s in subtasks)
    assert {scenario.split("/")[0] for scenario, _ in subtasks} == {"Backend", "Code"}
    for scenario, s in subtasks:
        assert abs(sum(c.weight for c in s.checks) - (len(s.checks) if scenario == "Code/scenario5" else 1.0)) < 1e-9
    generator = suite.task("backend-scenario3").subtasks[0]
    assert generator.query.startswith("Query:\nImplement `subtask1_generator.py`")  # the full v2 text is the prompt
    assert suite.pass_score == 6.0


def test_the_family_is_deterministic_and_its_splits_are_disjoint():
    train, test = basics.generate(0, "train", 40), basics.generate(0, "test", 15)
    assert [t.id for t in basics.generate(0, "test", 15)] == [t.id for t in test]
    assert not {t.id for t in train} & {t.id for t in test}
    assert not {s.query for t in train for s in t.subtasks} & {s.query for t in test for s in t.subtasks}
    assert {t.label("kind") for t in test} == set(basics.KINDS)
    assert {t.label("kind") for t in train} == set(basics.TRAIN_KINDS) and "affine-function" not in basics.TRAIN_KINDS
    assert all(t.label("split") == "test" for t in test) and all(t.label("split") == "train" for t in train)
    other_seed = basics.generate(1, "test", 15)
    assert {t.id for t in other_seed} != {t.id for t in test} and all(t.label("split") == "test" for t in other_seed)
    with pytest.raises(SuiteError):
        basics.generate(0, "validation", 3)


def test_held_out_instances_use_no_word_folder_or_number_seen_in_training():
    def tokens(tasks):
        return {token for t in tasks for s in t.subtasks for token in re.findall(r"[A-Za-z]+|\d+", s.query)}

    train, test = tokens(basics.generate(0, "train", 400)), tokens(basics.generate(0, "test", 100))
    template_words = tokens(basics.generate(1, "train", 10)) & tokens(basics.generate(1, "test", 10))
    slot_values = {
        *basics.VOCABULARIES["test"].words,
        *basics.VOCABULARIES["test"].folders,
        basics.VOCABULARIES["test"].source_folder,
    }
    assert slot_values <= test and not slot_values & train
    # Every number in a held-out query is new too, except the template's own "2" (`... * 2, importing`).
    assert {t for t in test & train if t.isdigit()} <= {"2"}
    assert not (test & train) - template_words - set(basics.OPERATION_NAMES.values()) - {"2", "txt", "py"}


def test_the_expert_plans_every_instance_one_call_per_turn():
    for task in basics.generate(3, "train", 25) + basics.generate(3, "test", 10):
        for subtask in task.subtasks:
            plan = basics.plan_for(subtask.query)
            assert plan, subtask.query
            messages = [{"role": "system", "content": "be useful"}, {"role": "user", "content": subtask.query}]
            for step in plan:
                reply = expert_reply({"messages": messages})
                assert reply.tool_calls == ((step.name, step.arguments_json()),)
                messages += [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": step.name, "arguments": step.arguments_json()},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c", "content": "ok"},
                ]
            assert expert_reply({"messages": messages}).content == DONE
            # After rubric feedback it carries out the plan again.
            again = expert_reply(
                {"messages": messages + [{"role": "user", "content": "Focus on fixing these rubric gaps:\n- x"}]}
            )
            assert again.tool_calls[0][0] == plan[0].name
    assert expert_reply({"messages": [{"role": "user", "content": "Write a novel."}]}).content == UNKNOWN


def test_expert_tool_arguments_are_json_objects_the_tools_accept():
    task = next(t for t in basics.generate(0, "test", 12) if t.label("kind") == "replace-word")
    ((name, arguments),) = expert_reply({"messages": [{"role": "user", "content": task.subtasks[0].query}]}).tool_calls
    assert name == "edit_file" and set(json.loads(arguments)) == {"path", "old_text", "new_text"}
