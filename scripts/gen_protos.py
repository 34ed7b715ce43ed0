"""Compile protos/limi/**/*.proto into the importable `limi` package under lib/contract/src.

`python scripts/gen_protos.py` regenerates the code; `--check` regenerates into a temporary
folder and exits 1 with the names of the stale files when the committed code differs.
It does not install anything: grpcio-tools must be the pinned version (see requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import filecmp
import pathlib
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUTPUT_ROOT = ROOT / "lib" / "contract" / "src"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(output: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={output}",
        f"--pyi_out={output}",
        f"--grpc_python_out={output}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")


def generated_files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    if not args.check:
        for stale in generated_files(OUTPUT_ROOT):
            (OUTPUT_ROOT / stale).unlink()
        generate(OUTPUT_ROOT)
        print(f"generated {len(generated_files(OUTPUT_ROOT))} files under {OUTPUT_ROOT}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp)
        generate(fresh)
        expected, actual = generated_files(fresh), generated_files(OUTPUT_ROOT)
        stale = sorted(expected ^ actual)
        stale += sorted(
            name for name in expected & actual if not filecmp.cmp(fresh / name, OUTPUT_ROOT / name, shallow=False)
        )
    if stale:
        print("generated protobuf code is stale; run `python scripts/gen_protos.py`:", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    print("generated protobuf code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
