"""`python -m limi_trainer.run_job RUN_DIR`: the training process the service starts for one run.

It runs `training.train` on a run directory that already holds `run_config.json` and turns the
outcome into an exit status (limi_core.exit_codes) and a last progress line the service reads:
0 finished; 2 the input cannot be trained on (a typed error: bad dataset, ambiguous rendering, unknown model, a
checkpoint for another plan), with a `failed` line of kind `invalid_input`; 1 anything else,
with kind `crashed` (the service may retry: training resumes from the last checkpoint). Under
torchrun every rank runs this module; only rank 0 writes progress. It does not create runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import sys
import traceback
import warnings

from limi_core.exit_codes import EXIT_FAILED as EXIT_CRASHED
from limi_core.exit_codes import EXIT_OK
from limi_core.exit_codes import EXIT_USAGE as EXIT_INVALID_INPUT

# Set by whoever starts the training process: it is killed when that process dies.
PARENT_PID_VARIABLE = "LIMI_TRAINER_PARENT_PID"


def die_with_parent() -> None:
    """When started by a process that set $LIMI_TRAINER_PARENT_PID: SIGKILL this process when its
    parent dies (Linux). Under torchrun the parent is torchrun, which the service started."""
    parent = os.environ.get(PARENT_PID_VARIABLE)
    if not parent:
        return
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(EXIT_CRASHED)


def quiet_libraries() -> None:
    """DeepSpeed and torch.distributed print per-step chatter; keep warnings and errors only."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("DeepSpeed", "deepspeed", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def run(run_dir: pathlib.Path) -> int:
    quiet_libraries()
    from limi_core.errors import LimiError
    from limi_trainer import reporting, training

    is_main = os.environ.get("RANK", "0") == "0"
    try:
        training.train(run_dir)
    except (LimiError, OSError) as exc:
        if is_main:
            kind = "invalid_input" if isinstance(exc, LimiError) else "crashed"
            reporting.ProgressLog(run_dir).emit("failed", kind=kind, error=f"{type(exc).__name__}: {exc}")
        print(f"limi-trainer run {run_dir.name}: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT if isinstance(exc, LimiError) else EXIT_CRASHED
    except Exception as exc:  # any other failure: reported as a crash (exit status 1) with its traceback
        if is_main:
            reporting.ProgressLog(run_dir).emit(
                "failed", kind="crashed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:]
            )
        traceback.print_exc()
        return EXIT_CRASHED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m limi_trainer.run_job", description="Run the training run in RUN_DIR (it holds run_config.json)."
    )
    parser.add_argument("run_dir", type=pathlib.Path)
    args = parser.parse_args(argv)
    die_with_parent()
    return run(args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
