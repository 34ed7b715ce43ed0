"""What the made-up PR records of synthetic_prs.py are built from: `Change`, unified diffs, identifiers.

A change kind (synthetic_pr_fixes.py, synthetic_pr_features.py) takes a random generator and a
context (repository, language, module, noun, issue number, limits) and returns a `Change`: its
category, a title and description in the voice of a PR author, the changed files and a unified
diff with plausible code in Python, Go, TypeScript or Rust. Invented code for tests; nothing here
is copied from a real project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random


@dataclasses.dataclass(frozen=True)
class Change:
    category: str
    title: str
    body: str
    files: list[str]
    diff: str


def sha(*parts: object) -> str:
    return hashlib.sha1("/".join(str(p) for p in parts).encode()).hexdigest()


def unified_diff(
    path: str, start: int, header: str, before: list[str], removed: list[str], added: list[str], after: list[str]
) -> str:
    """One-hunk unified diff of `path` with correct line counts."""
    old_count = len(before) + len(removed) + len(after)
    new_count = len(before) + len(added) + len(after)
    lines = [
        f"diff --git a/{path} b/{path}",
        f"index {sha(path, 'old')[:7]}..{sha(path, 'new')[:7]} 100644",
        f"--- a/{path}",
        f"+++ b/{path}",
        f"@@ -{start},{old_count} +{start},{new_count} @@ {header}".rstrip(),
    ]
    lines += (
        [" " + line for line in before]
        + ["-" + line for line in removed]
        + ["+" + line for line in added]
        + [" " + line for line in after]
    )
    return "\n".join(lines) + "\n"


def _words(*parts: str) -> list[str]:
    return [w for part in parts for w in part.replace("-", "_").split("_") if w]


def ident(language: str, *parts: str) -> str:
    words = _words(*parts)
    if language in ("py", "rs"):
        return "_".join(words)
    if language == "go":
        return "".join(w.capitalize() for w in words)
    return words[0] + "".join(w.capitalize() for w in words[1:])


def source_path(ctx: dict, stem: str) -> str:
    language, module = ctx["language"], ctx["module"]
    package = ctx["repository"].split("/")[1].replace("-", "_")
    return {
        "py": f"src/{package}/{module}/{stem}.py",
        "go": f"internal/{module}/{stem}.go",
        "ts": f"src/{module}/{ident('ts', stem)}.ts",
        "rs": f"src/{module}/{stem}.rs",
    }[language]


def random_hunk(
    path: str,
    rng: random.Random,
    header: str,
    before: list[str],
    removed: list[str],
    added: list[str],
    after: list[str],
) -> str:
    return unified_diff(path, rng.randint(12, 380), header, before, removed, added, after)


def pick(rng: random.Random, *options: str) -> str:
    return rng.choice(options)
