"""The exit codes of every limi process, one meaning each (the README's table is this one).

Services (`python -m limi_<service>`), the `limi` command and its subcommands, `limi-curator`,
`limi-train`, `limi-evaluate` and the trainer's worker process all exit with these. A service
stopped by SIGTERM or SIGINT after it started exits 0: stopping is not a failure.
"""

from __future__ import annotations

EXIT_OK = 0
# The work failed: an unexpected error, a crashed training run, a demo stage that failed.
EXIT_FAILED = 1
# Bad usage or configuration: a flag, an argument, an environment variable or an input file is
# wrong; running it again unchanged fails again.
EXIT_USAGE = 2
# A port to listen on is taken or not a valid address.
EXIT_PORT = 3
# Something it needs did not answer: NATS, another service, a model endpoint.
EXIT_UNREACHABLE = 4
# Something it needs is missing or unusable: no sandbox backend starts, a checkpoint or
# benchmark files cannot be read.
EXIT_PRECONDITION = 5
# Interrupted by Ctrl-C before it finished.
EXIT_INTERRUPTED = 130

MEANINGS = {
    EXIT_OK: "success",
    EXIT_FAILED: "the work failed",
    EXIT_USAGE: "bad usage or configuration",
    EXIT_PORT: "a port cannot be bound",
    EXIT_UNREACHABLE: "a dependency did not answer",
    EXIT_PRECONDITION: "something needed is missing or unusable",
    EXIT_INTERRUPTED: "interrupted",
}
