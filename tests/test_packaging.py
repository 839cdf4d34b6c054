"""An installed hood works outside the repository: the wheel holds every module, the registry manifest and
the bundled configs (those in subfolders of configs/ too), and from another directory the installed copy
finds its configs and runs its commands.

The wheel is built offline from a copy of the tracked files (``pip wheel --no-deps --no-build-isolation``
with this interpreter's setuptools), so the test never writes build files into the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hood.cli.options import bundled_configs

REPO = Path(__file__).resolve().parents[1]


def _can_build_wheels() -> bool:
    """setuptools >= 70.1 builds wheels itself; older ones need the ``wheel`` package."""
    probe = "import importlib.util as u, setuptools.command as c, os; " \
            "raise SystemExit(0 if os.path.exists(os.path.join(c.__path__[0], 'bdist_wheel.py')) or u.find_spec('wheel') else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _can_build_wheels():
        pytest.skip("this interpreter's setuptools cannot build wheels offline (needs setuptools >= 70.1 or the wheel package)")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    src = tmp_path_factory.mktemp("src")
    for rel in tracked.stdout.decode().split("\0"):
        if rel and (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("hood-*.whl")
    return whl


def test_the_wheel_holds_modules_manifest_and_every_bundled_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "hood").rglob("*.py")}
    assert modules and modules <= names, sorted(modules - names)
    assert "hood/data/manifest.json" in names
    top = {f"hood/configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")}
    assert top and top <= names, sorted(top - names)  # every top-level config, always
    nested = {f"hood/configs/{p.relative_to(REPO / 'configs').as_posix()}" for p in (REPO / "configs").glob("*/*.yaml")}
    assert nested <= names, sorted(nested - names)  # configs in subfolders (paper/), where the checkout has any
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)


def test_the_installed_copy_finds_its_configs_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip install puts into site-packages
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = ("import json, hood; from hood.cli.options import bundled_configs as b; "
             "print(json.dumps({'hood': hood.__file__, 'configs': {k: str(v) for k, v in b().items()}}))")
    r = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert Path(got["hood"]).is_relative_to(site)  # the installed copy, not the checkout
    assert got["configs"].keys() == bundled_configs().keys()  # the same names as in the checkout
    assert all(Path(p).is_file() and Path(p).is_relative_to(site) for p in got["configs"].values())

    help_ = subprocess.run([sys.executable, "-m", "hood", "evaluate", "--config", "cifar10_wrn40_2", "--help"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "--ood" in help_.stdout, help_.stderr
    # a bundled config by name resolves (its ID set is what is missing, not the config file)
    run = subprocess.run([sys.executable, "-m", "hood", "pretrain", "--config", "cifar10_wrn40_2", "--quiet"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "'cifar10' is not installed" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (elsewhere / "runs").exists()
