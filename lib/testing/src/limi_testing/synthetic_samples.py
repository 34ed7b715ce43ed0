"""Deterministic LIMI-format tool-use conversations, for tests, benchmarks and CPU demos.

`tool_use_sample(n)` returns the n-th conversation of a fixed family: a system prompt, a user
request, an assistant turn with one or more tool calls, consecutive tool results, and a final
assistant answer; some conversations have a second round. The same `n` always gives the same
sample, so a tiny model can be trained on a few of them and asked to reproduce a tool call.
`varied_length_samples` stretches conversations to a spread of lengths for packing figures.
They are synthetic: no real agent produced them.
"""

from __future__ import annotations

import random

SYSTEM_PROMPT = "You are a coding agent. Use the tools to inspect and change the project."

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file of the project.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_command",
            "description": "Run a shell command in the project.",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_directory",
            "description": "List a directory.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    },
]

PATHS = (
    "src/main.py",
    "README.md",
    "tests/test_app.py",
    "setup.cfg",
    "app/models.py",
    "docs/index.md",
    "Makefile",
    "src/utils.py",
)
COMMANDS = ("pytest -q", "ls -la", "python3 app.py", "make build", "git status", "pip list")


def _call(call_id: str, name: str, arguments: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def read_file_request(path: str) -> str:
    """The user request whose trained answer is a `read_file` call on `path`."""
    return f"Show me the file {path}"


def tool_use_sample(n: int, paths: tuple[str, ...] = PATHS) -> dict:
    """The n-th conversation (deterministic); its first request reads `paths[n % len(paths)]`."""
    path = paths[n % len(paths)]
    command = COMMANDS[n % len(COMMANDS)]
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": read_file_request(path)},
        {"role": "assistant", "content": "", "tool_calls": [_call(f"call_{n}_0", "read_file", {"path": path})]},
        {"role": "tool", "content": f"# {path}\nprint('hello {n}')", "tool_call_id": f"call_{n}_0"},
        {"role": "assistant", "content": f"The file {path} prints hello {n}."},
    ]
    if n % 2 == 1:
        messages += [
            {"role": "user", "content": f"Now run {command} and list the directory."},
            {
                "role": "assistant",
                "content": "Running both.",
                "tool_calls": [
                    _call(f"call_{n}_1", "run_command", {"command": command}),
                    _call(f"call_{n}_2", "list_directory", {"path": "."}),
                ],
            },
            {"role": "tool", "content": f"exit code 0: {command} ok", "tool_call_id": f"call_{n}_1"},
            {"role": "tool", "content": "src\ntests\nREADME.md", "tool_call_id": f"call_{n}_2"},
            {"role": "assistant", "content": f"{command} passed; the directory holds src, tests and README.md."},
        ]
    return {"tools": TOOLS, "messages": messages}


def run_tests_request() -> str:
    """The user request whose trained answer is a `run_command` call running the tests."""
    return "Run the test suite and tell me if it passes."


def run_tests_sample(n: int) -> dict:
    """A conversation that answers `run_tests_request()` with `run_command {"command": "pytest -q"}`."""
    call_id = f"call_{n}_tests"
    return {
        "tools": TOOLS,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": run_tests_request()},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [_call(call_id, "run_command", {"command": "pytest -q"})],
            },
            {"role": "tool", "content": f"{n + 3} passed in 0.{n}s", "tool_call_id": call_id},
            {"role": "assistant", "content": f"All {n + 3} tests pass."},
        ],
    }


def varied_length_samples(count: int, *, seed: int = 0, min_rounds: int = 1, max_rounds: int = 30) -> list[dict]:
    """`count` conversations with 1-`max_rounds` tool rounds each (a long-tailed spread of lengths)."""
    chooser = random.Random(seed)
    samples = []
    for n in range(count):
        rounds = min(max_rounds, max(min_rounds, int(chooser.lognormvariate(1.6, 0.8))))
        sample = tool_use_sample(n)
        messages = sample["messages"][:2]
        for r in range(rounds):
            path = PATHS[(n + r) % len(PATHS)]
            call_id = f"call_{n}_r{r}"
            messages += [
                {
                    "role": "assistant",
                    "content": f"Step {r}: reading {path}.",
                    "tool_calls": [_call(call_id, "read_file", {"path": path})],
                },
                {
                    "role": "tool",
                    "content": f"# {path}\n"
                    + "\n".join(f"line {k}: value = {k * r}" for k in range(chooser.randint(2, 12))),
                    "tool_call_id": call_id,
                },
            ]
        messages.append({"role": "assistant", "content": f"Done after {rounds} steps."})
        samples.append({"tools": TOOLS, "messages": messages})
    return samples


def limi_like_lengths(
    count: int = 78, *, minimum: int = 13_000, mean: int = 42_400, maximum: int = 152_000
) -> list[int]:
    """Token lengths shaped like LIMI's trajectories (78 of 13k-152k tokens, mean 42.4k), sorted.

    Log-normal quantiles mapped affinely onto [minimum, maximum]; the spread is solved so the
    mean comes out right. For packing figures; no text behind them.
    """
    import math
    from statistics import NormalDist

    quantiles = [NormalDist().inv_cdf((i + 0.5) / count) for i in range(count)]

    def lengths(sigma: float) -> list[float]:
        raw = [math.exp(sigma * q) for q in quantiles]
        low, high = raw[0], raw[-1]
        return [minimum + (r - low) / (high - low) * (maximum - minimum) for r in raw]

    low_sigma, high_sigma = 1e-3, 5.0  # the mean falls as the spread (skew) grows
    for _ in range(100):
        sigma = (low_sigma + high_sigma) / 2
        if sum(lengths(sigma)) / count > mean:
            low_sigma = sigma
        else:
            high_sigma = sigma
    return [round(x) for x in lengths((low_sigma + high_sigma) / 2)]
