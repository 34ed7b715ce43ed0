"""Run every benchmark under bench/ and write one markdown file with all their tables.

Each benchmark measures limi beside its own baseline in the same run and prints a markdown
table; this script runs them one after another (never in parallel: they would measure each
other), keeps their JSON figures under bench/results/, and writes bench/results/summary.md
with each table under a heading. A benchmark that fails is reported in the summary with its
exit code and the end of its output, and makes this script exit 1; the others still run.

Usage: python bench/run_all.py [--only bus,rollout] [--out bench/results]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
BENCHMARKS = ("bus", "sandbox", "rollout", "trainer")


def run_one(name: str, out: pathlib.Path) -> tuple[int, str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(HERE / f"{name}.py"), "--json", str(out / f"{name}.json")], capture_output=True, text=True
    )
    return (
        done.returncode,
        done.stdout if done.returncode == 0 else (done.stdout + done.stderr)[-3000:],
        time.perf_counter() - started,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--out", type=pathlib.Path, default=HERE / "results", help="folder for the JSON figures and summary.md"
    )
    args = parser.parse_args()
    chosen = tuple(args.only.split(",")) if args.only else BENCHMARKS
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        print(
            f"run_all: no benchmark named {', '.join(unknown)}; the benchmarks are {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sections, failed = [f"# limi benchmarks ({time.strftime('%Y-%m-%d %H:%M')})\n"], 0
    for name in chosen:
        print(f"run_all: {name} ...", flush=True)
        code, output, seconds = run_one(name, args.out)
        if code == 0:
            sections.append(f"## {name} ({seconds:.0f} s)\n\n{output.strip()}\n")
        else:
            failed += 1
            sections.append(
                f"## {name}: FAILED with exit code {code} after {seconds:.0f} s\n\n```\n{output.strip()}\n```\n"
            )
    summary = args.out / "summary.md"
    summary.write_text("\n".join(sections))
    print(summary.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
