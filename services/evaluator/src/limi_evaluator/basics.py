"""The `workspace-basics` task family: small tool-use tasks, drawn from a seed, with held-out vocabularies.

Six kinds of task, each a fixed sentence template with a few slots (file names, words,
numbers) and a plan of tool calls that solves it by construction:
- write-file: "Create the file notes/alpha.txt with the content: cedar 42" -> write_file;
- python-function: "Write a Python function triple_x(x) in maple.py that returns x * 3." -> write_file;
- replace-word: "In docs/orbit.txt, replace the word raven with lumen." -> edit_file;
- copy-file: "Create the directory out and copy data/ember.txt into it." -> shell;
- chain (two progressive subtasks sharing the workspace): a function, then a second module
  that imports it;
- affine-function, held out: "... that returns x * 7 + 3." -> write_file. It is never drawn for
  the "train" split, so a model is scored on one kind of task it was never shown.
The two splits share no slot value: "train" instances draw their words, folders and numbers
from one vocabulary and "test" instances from another (`VOCABULARIES`), so a model trained on
train trajectories meets only names, words and numbers it has never seen when it is scored,
and no instance is in both splits whatever the seeds. Every instance's rubric checks are
Python run in the sandbox workspace. `plan_for(query)` parses a query back into its tool calls;
expert.py answers from it. It runs nothing itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re

from limi_evaluator.suite import Check, Subtask, SuiteError, Task

FAMILY = "workspace-basics"
SPLITS = ("train", "test")
OPERATIONS = {"+": lambda x, k: x + k, "-": lambda x, k: x - k, "*": lambda x, k: x * k}
OPERATION_NAMES = {"+": "add", "-": "sub", "*": "mul"}
TRAIN_KINDS = ("write-file", "python-function", "replace-word", "copy-file", "chain")
HELD_OUT_KINDS = ("affine-function",)
KINDS = TRAIN_KINDS + HELD_OUT_KINDS


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The slot values one split draws from."""

    words: tuple[str, ...]
    folders: tuple[str, ...]
    # Where copy-file tasks find their source file.
    source_folder: str
    # Numbers written into files.
    numbers: range
    # The constant k of `x op k`.
    factors: range
    kinds: tuple[str, ...]


VOCABULARIES = {
    "train": Vocabulary(
        words=(
            "alpha",
            "bravo",
            "cedar",
            "delta",
            "ember",
            "falcon",
            "garnet",
            "harbor",
            "indigo",
            "juniper",
            "kepler",
            "lumen",
            "maple",
            "nectar",
            "orbit",
            "pepper",
            "quartz",
            "raven",
            "sierra",
            "tundra",
            "umber",
            "violet",
            "willow",
            "zephyr",
        ),
        folders=("notes", "docs", "data", "src", "out", "logs"),
        source_folder="data",
        numbers=range(10, 50),
        factors=range(2, 6),
        kinds=TRAIN_KINDS,
    ),
    "test": Vocabulary(
        words=(
            "amber",
            "basil",
            "cobalt",
            "dahlia",
            "fennel",
            "ginger",
            "hazel",
            "iris",
            "jasper",
            "lotus",
            "mango",
            "nutmeg",
            "olive",
            "poppy",
            "quince",
            "russet",
            "saffron",
            "thistle",
            "topaz",
            "walnut",
            "yarrow",
            "zinnia",
            "sorrel",
            "larch",
        ),
        folders=("reports", "archive", "assets", "config", "drafts", "share"),
        source_folder="inbox",
        numbers=range(50, 100),
        factors=range(6, 10),
        kinds=KINDS,
    ),
}


@dataclasses.dataclass(frozen=True)
class ToolStep:
    name: str
    arguments: dict

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


# --- the query templates and their parsers -------------------------------------------------


def write_file_query(path: str, text: str) -> str:
    return f"Create the file {path} with the content: {text}"


def function_query(name: str, module: str, op: str, k: int) -> str:
    return f"Write a Python function {name}(x) in {module}.py that returns x {op} {k}."


def affine_query(name: str, module: str, op: str, k: int, op2: str, c: int) -> str:
    return f"Write a Python function {name}(x) in {module}.py that returns x {op} {k} {op2} {c}."


def replace_query(path: str, old: str, new: str) -> str:
    return f"In {path}, replace the word {old} with {new}."


def copy_query(folder: str, source: str) -> str:
    return f"Create the directory {folder} and copy {source} into it."


def wrapper_query(name: str, module: str, inner: str, inner_module: str) -> str:
    return f"Write a Python function {name}(x) in {module}.py that returns {inner}(x) * 2, importing {inner} from {inner_module}."


PATH = r"[A-Za-z0-9_./-]+"
NAME = r"[A-Za-z_][A-Za-z0-9_]*"
PARSERS = (
    (
        re.compile(rf"^Create the file ({PATH}) with the content: (.+)$"),
        lambda m: [ToolStep("write_file", {"path": m[1], "content": m[2] + "\n"})],
    ),
    (
        re.compile(
            rf"^Write a Python function ({NAME})\(x\) in ({NAME})\.py that returns ({NAME})\(x\) \* 2, importing \3 from ({NAME})\.$"
        ),
        lambda m: [ToolStep("write_file", {"path": f"{m[2]}.py", "content": wrapper_source(m[1], m[3], m[4])})],
    ),
    (
        re.compile(
            rf"^Write a Python function ({NAME})\(x\) in ({NAME})\.py that returns (x [-+*] \d+(?: [-+] \d+)?)\.$"
        ),
        lambda m: [ToolStep("write_file", {"path": f"{m[2]}.py", "content": expression_source(m[1], m[3])})],
    ),
    (
        re.compile(rf"^In ({PATH}), replace the word ({NAME}) with ({NAME})\.$"),
        lambda m: [ToolStep("edit_file", {"path": m[1], "old_text": m[2], "new_text": m[3]})],
    ),
    (
        re.compile(rf"^Create the directory ({PATH}) and copy ({PATH}) into it\.$"),
        lambda m: [ToolStep("shell", {"command": f"mkdir -p {m[1]} && cp {m[2]} {m[1]}/"})],
    ),
)


def plan_for(query: str) -> list[ToolStep] | None:
    """The tool calls that solve a workspace-basics query, or None for any other text."""
    text = query.strip()
    for pattern, plan in PARSERS:
        match = pattern.match(text)
        if match:
            return plan(match)
    return None


def expression_source(name: str, expression: str) -> str:
    return f"def {name}(x):\n    return {expression}\n"


def function_source(name: str, op: str, k: int) -> str:
    return expression_source(name, f"x {op} {k}")


def wrapper_source(name: str, inner: str, inner_module: str) -> str:
    return f"from {inner_module} import {inner}\n\n\ndef {name}(x):\n    return {inner}(x) * 2\n"


# --- rubric checks (Python run in the workspace) -----------------------------------------


def file_text_check(path: str, text: str) -> Check:
    code = f"import pathlib\np = pathlib.Path({path!r})\nassert p.is_file(), 'missing'\nassert p.read_text().strip() == {text!r}, 'wrong content'\n"
    return Check(name=f"{path} exists and contains exactly {text!r}", python=code)


def function_checks(module: str, name: str, expected: dict[int, int]) -> tuple[Check, ...]:
    imports = f"import sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, '.')\nfrom {module} import {name}\n"
    asserts = "".join(
        f"assert {name}({x}) == {y}, f'{name}({x}) returned {{{name}({x})!r}}, expected {y}'\n"
        for x, y in expected.items()
    )
    return (
        Check(name=f"{module}.py defines {name}(x)", python=imports + f"assert callable({name})\n"),
        Check(
            name=f"{name}(x) returns the right values for x in {sorted(expected)}", python=imports + asserts, weight=2.0
        ),
    )


# --- instances ------------------------------------------------------------------------------


def _task(
    kind: str, split: str, key: str, subtasks: tuple[Subtask, ...], files: tuple[tuple[str, bytes], ...] = ()
) -> Task:
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return Task(
        id=f"{kind}-{digest}",
        subtasks=subtasks,
        files=files,
        description=subtasks[0].query,
        labels=(("family", FAMILY), ("kind", kind), ("split", split)),
    )


def _instance(rng: random.Random, kind: str, split: str) -> Task:
    v = VOCABULARIES[split]
    w = rng.sample(v.words, 4)
    folder, n, k, op = (
        rng.choice(v.folders),
        rng.choice(v.numbers),
        rng.choice(v.factors),
        rng.choice(tuple(OPERATIONS)),
    )
    if kind == "write-file":
        path, text = f"{folder}/{w[0]}.txt", f"{w[1]} {n}"
        subtask = Subtask(
            "1", write_file_query(path, text), deliverables=(path,), checks=(file_text_check(path, text),)
        )
        return _task(kind, split, f"{kind}|{path}|{text}", (subtask,))
    if kind == "python-function":
        name, module = f"{w[0]}_{OPERATION_NAMES[op]}", w[1]
        expected = {x: OPERATIONS[op](x, k) for x in (0, 3, -7)}
        subtask = Subtask(
            "1",
            function_query(name, module, op, k),
            deliverables=(f"{module}.py",),
            checks=function_checks(module, name, expected),
        )
        return _task(kind, split, f"{kind}|{name}|{module}|{op}|{k}", (subtask,))
    if kind == "affine-function":
        op2, c = rng.choice(("+", "-")), rng.choice(v.factors)
        name, module = f"{w[0]}_{OPERATION_NAMES[op]}_{OPERATION_NAMES[op2]}", w[1]
        expected = {x: OPERATIONS[op2](OPERATIONS[op](x, k), c) for x in (0, 3, -7)}
        subtask = Subtask(
            "1",
            affine_query(name, module, op, k, op2, c),
            deliverables=(f"{module}.py",),
            checks=function_checks(module, name, expected),
        )
        return _task(kind, split, f"{kind}|{name}|{module}|{op}|{k}|{op2}|{c}", (subtask,))
    if kind == "replace-word":
        path, old, new = f"{folder}/{w[0]}.txt", w[1], w[2]
        before = f"The {w[3]} report mentions {old} once.\nNothing else changes here.\n"
        after = before.replace(old, new)
        subtask = Subtask(
            "1", replace_query(path, old, new), deliverables=(path,), checks=(file_text_check(path, after.strip()),)
        )
        return _task(kind, split, f"{kind}|{path}|{old}|{new}|{w[3]}", (subtask,), files=((path, before.encode()),))
    if kind == "copy-file":
        source, folder = f"{v.source_folder}/{w[0]}.txt", folder if folder != v.source_folder else "backup"
        text = f"{w[1]} {w[2]} {n}"
        copied = f"{folder}/{w[0]}.txt"
        subtask = Subtask(
            "1",
            copy_query(folder, source),
            deliverables=(copied,),
            checks=(file_text_check(copied, text), file_text_check(source, text)),
        )
        return _task(
            kind, split, f"{kind}|{source}|{folder}|{text}", (subtask,), files=((source, f"{text}\n".encode()),)
        )
    if kind != "chain":
        raise SuiteError("generate.kind", f"unknown kind {kind!r}")
    inner, module, outer, outer_module = f"{w[0]}_{OPERATION_NAMES[op]}", w[1], f"{w[2]}_twice", w[3]
    expected = {x: OPERATIONS[op](x, k) for x in (0, 3, -7)}
    first = Subtask(
        "1",
        function_query(inner, module, op, k),
        deliverables=(f"{module}.py",),
        checks=function_checks(module, inner, expected),
    )
    second = Subtask(
        "2",
        wrapper_query(outer, outer_module, inner, module),
        deliverables=(f"{outer_module}.py",),
        checks=function_checks(outer_module, outer, {x: 2 * y for x, y in expected.items()}),
    )
    return _task("chain", split, f"chain|{inner}|{module}|{op}|{k}|{outer}|{outer_module}", (first, second))


def generate(seed: int, split: str, count: int, exclude: frozenset[str] = frozenset()) -> list[Task]:
    """`count` distinct instances of `split` (kinds in turn), the same for the same arguments; ids in `exclude` are skipped."""
    if split not in SPLITS:
        raise SuiteError("generate.split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
    kinds = VOCABULARIES[split].kinds
    rng = random.Random(f"{FAMILY}:{split}:{seed}")
    tasks: dict[str, Task] = {}
    attempts = 0
    while len(tasks) < count:
        attempts += 1
        if attempts > 1000 * count:
            raise RuntimeError(f"could not draw {count} distinct {split} instances")
        task = _instance(rng, kinds[len(tasks) % len(kinds)], split)
        if task.id not in tasks and task.id not in exclude:
            tasks[task.id] = task
    return list(tasks.values())
