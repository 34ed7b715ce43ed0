"""The `workspace-basics` task family: small tool-use tasks a tiny model can learn, from a seed.

Five kinds of task, each a fixed sentence template with a few slots (file names, words,
numbers) and a plan of tool calls that solves it by construction:
- write-file: "Create the file notes/alpha.txt with the content: cedar 42" -> write_file;
- python-function: "Write a Python function triple_x(x) in maple.py that returns x * 3." -> write_file;
- replace-word: "In docs/orbit.txt, replace the word raven with lumen." -> edit_file;
- copy-file: "Create the directory out and copy data/ember.txt into it." -> shell;
- chain (two progressive subtasks sharing the workspace): a function, then a second module
  that imports it.
Every instance's rubric checks are Python run in the sandbox workspace. `generate(seed, split,
count)` draws instances from a seeded generator and keeps those whose content hash falls in the
split ("train" about 75 %, "test" about 25 %), so no instance is in both splits whatever the
seed. `plan_for(query)` parses a query back into its tool calls; expert.py answers from it.
It runs nothing itself.
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
WORDS = ("alpha", "bravo", "cedar", "delta", "ember", "falcon", "garnet", "harbor", "indigo", "juniper", "kepler", "lumen",
         "maple", "nectar", "orbit", "pepper", "quartz", "raven", "sierra", "tundra", "umber", "violet", "willow", "zephyr")
FOLDERS = ("notes", "docs", "data", "src", "out", "logs")
OPERATIONS = {"+": lambda x, k: x + k, "-": lambda x, k: x - k, "*": lambda x, k: x * k}
KINDS = ("write-file", "python-function", "replace-word", "copy-file", "chain")


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


def replace_query(path: str, old: str, new: str) -> str:
    return f"In {path}, replace the word {old} with {new}."


def copy_query(folder: str, source: str) -> str:
    return f"Create the directory {folder} and copy {source} into it."


def wrapper_query(name: str, module: str, inner: str, inner_module: str) -> str:
    return f"Write a Python function {name}(x) in {module}.py that returns {inner}(x) * 2, importing {inner} from {inner_module}."


PATH = r"[A-Za-z0-9_./-]+"
NAME = r"[A-Za-z_][A-Za-z0-9_]*"
PARSERS = (
    (re.compile(rf"^Create the file ({PATH}) with the content: (.+)$"), lambda m: [ToolStep("write_file", {"path": m[1], "content": m[2] + "\n"})]),
    (re.compile(rf"^Write a Python function ({NAME})\(x\) in ({NAME})\.py that returns ({NAME})\(x\) \* 2, importing \3 from ({NAME})\.$"),
     lambda m: [ToolStep("write_file", {"path": f"{m[2]}.py", "content": wrapper_source(m[1], m[3], m[4])})]),
    (re.compile(rf"^Write a Python function ({NAME})\(x\) in ({NAME})\.py that returns x ([-+*]) (\d+)\.$"),
     lambda m: [ToolStep("write_file", {"path": f"{m[2]}.py", "content": function_source(m[1], m[3], int(m[4]))})]),
    (re.compile(rf"^In ({PATH}), replace the word ({NAME}) with ({NAME})\.$"),
     lambda m: [ToolStep("edit_file", {"path": m[1], "old_text": m[2], "new_text": m[3]})]),
    (re.compile(rf"^Create the directory ({PATH}) and copy ({PATH}) into it\.$"),
     lambda m: [ToolStep("shell", {"command": f"mkdir -p {m[1]} && cp {m[2]} {m[1]}/"})]),
)


def plan_for(query: str) -> list[ToolStep] | None:
    """The tool calls that solve a workspace-basics query, or None for any other text."""
    text = query.strip()
    for pattern, plan in PARSERS:
        match = pattern.match(text)
        if match:
            return plan(match)
    return None


def function_source(name: str, op: str, k: int) -> str:
    return f"def {name}(x):\n    return x {op} {k}\n"


def wrapper_source(name: str, inner: str, inner_module: str) -> str:
    return f"from {inner_module} import {inner}\n\n\ndef {name}(x):\n    return {inner}(x) * 2\n"


# --- rubric checks (Python run in the workspace) -----------------------------------------

def file_text_check(path: str, text: str) -> Check:
    code = f"import pathlib\np = pathlib.Path({path!r})\nassert p.is_file(), 'missing'\nassert p.read_text().strip() == {text!r}, 'wrong content'\n"
    return Check(name=f"{path} exists and contains exactly {text!r}", python=code)


def function_checks(module: str, name: str, expected: dict[int, int]) -> tuple[Check, ...]:
    imports = f"import sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, '.')\nfrom {module} import {name}\n"
    asserts = "".join(f"assert {name}({x}) == {y}, f'{name}({x}) returned {{{name}({x})!r}}, expected {y}'\n" for x, y in expected.items())
    return (
        Check(name=f"{module}.py defines {name}(x)", python=imports + f"assert callable({name})\n"),
        Check(name=f"{name}(x) returns the right values for x in {sorted(expected)}", python=imports + asserts, weight=2.0),
    )


# --- instances ------------------------------------------------------------------------------

def _split_of(key: str) -> str:
    return "test" if int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 4 == 0 else "train"


def _task(kind: str, key: str, subtasks: tuple[Subtask, ...], files: tuple[tuple[str, bytes], ...] = ()) -> Task:
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return Task(id=f"{kind}-{digest}", subtasks=subtasks, files=files, description=subtasks[0].query,
                labels=(("family", FAMILY), ("kind", kind), ("split", _split_of(key))))


def _instance(rng: random.Random, kind: str) -> Task:
    w = rng.sample(WORDS, 4)
    folder, n, k, op = rng.choice(FOLDERS), rng.randrange(100), rng.randrange(2, 10), rng.choice(tuple(OPERATIONS))
    if kind == "write-file":
        path, text = f"{folder}/{w[0]}.txt", f"{w[1]} {n}"
        subtask = Subtask("1", write_file_query(path, text), deliverables=(path,), checks=(file_text_check(path, text),))
        return _task(kind, f"{kind}|{path}|{text}", (subtask,))
    if kind == "python-function":
        name, module = f"{w[0]}_{'add' if op == '+' else 'sub' if op == '-' else 'mul'}", w[1]
        expected = {x: OPERATIONS[op](x, k) for x in (0, 3, -7)}
        subtask = Subtask("1", function_query(name, module, op, k), deliverables=(f"{module}.py",), checks=function_checks(module, name, expected))
        key = f"{kind}|{name}|{module}|{op}|{k}"
        return _task(kind, key, (subtask,))
    if kind == "replace-word":
        path, old, new = f"{folder}/{w[0]}.txt", w[1], w[2]
        before = f"The {w[3]} report mentions {old} once.\nNothing else changes here.\n"
        after = before.replace(old, new)
        subtask = Subtask("1", replace_query(path, old, new), deliverables=(path,), checks=(file_text_check(path, after.strip()),))
        key = f"{kind}|{path}|{old}|{new}|{w[3]}"
        return _task(kind, key, (subtask,), files=((path, before.encode()),))
    if kind == "copy-file":
        source, target = f"data/{w[0]}.txt", folder if folder != "data" else "backup"
        text = f"{w[1]} {w[2]} {n}"
        copied = f"{target}/{w[0]}.txt"
        subtask = Subtask("1", copy_query(target, source), deliverables=(copied,),
                          checks=(file_text_check(copied, text), file_text_check(source, text)))
        key = f"{kind}|{source}|{target}|{text}"
        return _task(kind, key, (subtask,), files=((source, f"{text}\n".encode()),))
    inner, module, outer, outer_module = f"{w[0]}_{'add' if op == '+' else 'sub' if op == '-' else 'mul'}", w[1], f"{w[2]}_twice", w[3]
    expected = {x: OPERATIONS[op](x, k) for x in (0, 3, -7)}
    first = Subtask("1", function_query(inner, module, op, k), deliverables=(f"{module}.py",), checks=function_checks(module, inner, expected))
    second = Subtask("2", wrapper_query(outer, outer_module, inner, module), deliverables=(f"{outer_module}.py",),
                     checks=function_checks(outer_module, outer, {x: 2 * y for x, y in expected.items()}))
    key = f"chain|{inner}|{module}|{op}|{k}|{outer}|{outer_module}"
    return _task("chain", key, (first, second))


def generate(seed: int, split: str, count: int) -> list[Task]:
    """`count` distinct instances of `split`, the same for the same (seed, split, count)."""
    if split not in SPLITS:
        raise SuiteError("generate.split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
    rng = random.Random(f"{FAMILY}:{seed}")
    tasks: dict[str, Task] = {}
    attempts = 0
    while len(tasks) < count:
        attempts += 1
        if attempts > 1000 * count:
            raise RuntimeError(f"could not draw {count} distinct {split} instances")
        kind = KINDS[len(tasks) % len(KINDS)]
        task = _instance(rng, kind)
        if task.label("split") == split and task.id not in tasks:
            tasks[task.id] = task
    return list(tasks.values())
