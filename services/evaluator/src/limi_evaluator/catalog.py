"""Which benchmarks exist and how a name becomes something to run.

Names: `humaneval` (completion mode), `humaneval-tools` (tool-use mode), every suite file
shipped in the package's `suites/` folder by its file stem (`limi-basics`, `agencybench-v2`),
every `*.toml` / `*.json` in the configured extra suites folder, and a path to a suite file.
`Catalog.resolve` raises `InvalidArgument("benchmark", ...)` listing the known names for an
unknown one, and `load_suite` raises `SuiteError` naming the file and field of a broken suite.
Task families for `[generate]` tables are registered here. It runs nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

from limi_core.errors import InvalidArgument
from limi_evaluator import basics
from limi_evaluator.agencybench import v2_subtask_texts
from limi_evaluator.humaneval import Problem, load_problems
from limi_evaluator.suite import Suite, parse_suite, read_suite_table

BUILTIN_SUITES = pathlib.Path(__file__).resolve().parent / "suites"
HUMANEVAL, HUMANEVAL_TOOLS = "humaneval", "humaneval-tools"
FAMILIES = {basics.FAMILY: basics.generate}
SUITE_SUFFIXES = (".toml", ".json")


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # "suite", "humaneval" or "humaneval-tools"
    description: str = ""
    path: pathlib.Path | None = None


class Catalog:
    def __init__(self, benchmarks_dir: pathlib.Path, suites_dir: pathlib.Path | None = None) -> None:
        self.benchmarks_dir = pathlib.Path(benchmarks_dir)
        self.suites_dir = suites_dir

    def _suite_files(self) -> dict[str, pathlib.Path]:
        files: dict[str, pathlib.Path] = {}
        for folder in (BUILTIN_SUITES, self.suites_dir):
            if folder is not None and folder.is_dir():
                for path in sorted(folder.iterdir()):
                    if path.suffix in SUITE_SUFFIXES:
                        files.setdefault(path.stem, path)
        return files

    def list(self) -> list[Benchmark]:
        found = [
            Benchmark(HUMANEVAL, HUMANEVAL, "HumanEval, completion mode: pass@k over the 164 problems"),
            Benchmark(HUMANEVAL_TOOLS, HUMANEVAL_TOOLS, "HumanEval, tool-use mode: the agent writes solution.py"),
        ]
        for name, path in self._suite_files().items():
            found.append(Benchmark(name, "suite", _description(path), path))
        return found

    def names(self) -> list[str]:
        return [b.name for b in self.list()]

    def resolve(self, name: str) -> Benchmark:
        """The benchmark called `name`, or the suite file at path `name`.

        Raises:
            InvalidArgument: no such benchmark.
        """
        name = name.strip()
        if not name:
            raise InvalidArgument("benchmark", f"must not be empty; known: {', '.join(self.names())}")
        if name in (HUMANEVAL, HUMANEVAL_TOOLS):
            return Benchmark(name, name)
        files = self._suite_files()
        if name in files:
            return Benchmark(name, "suite", _description(files[name]), files[name])
        path = pathlib.Path(name).expanduser()
        if path.suffix in SUITE_SUFFIXES and path.is_file():
            return Benchmark(str(path), "suite", "", path)
        if path.suffix in SUITE_SUFFIXES:
            raise InvalidArgument("benchmark", f"suite file {name} does not exist")
        raise InvalidArgument(
            "benchmark",
            f"unknown benchmark {name!r}; known: {', '.join(self.names())} (or a path to a .toml/.json suite file)",
        )

    def load_suite(self, benchmark: Benchmark) -> Suite:
        if benchmark.path is None:
            raise InvalidArgument("benchmark", f"{benchmark.name} is not a suite")
        return parse_suite(
            read_suite_table(benchmark.path),
            str(benchmark.path),
            benchmarks_dir=self.benchmarks_dir,
            families=FAMILIES,
            v2_lookup=functools.partial(v2_subtask_texts, self.benchmarks_dir / "agencybench-v2"),
        )

    def problems(self) -> list[Problem]:
        return load_problems(self.benchmarks_dir)


def _description(path: pathlib.Path) -> str:
    try:
        table = read_suite_table(path)
    except InvalidArgument as exc:
        return f"(broken: {exc})"
    return str(table.get("description", "")).strip().splitlines()[0] if table.get("description") else ""
