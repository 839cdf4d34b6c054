"""The architecture as the code holds it: imports go down the floors (.ci/check_layers.py, also run by
`make lint`), detectors never read the config, and adding a detector is one file and one registry line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_import_goes_down_the_floors_and_none_runs_in_a_circle() -> None:
    proc = subprocess.run([sys.executable, str(REPO / ".ci" / "check_layers.py")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_layer_check_catches_an_import_up_and_a_circle(tmp_path: Path) -> None:
    for rel, text in {"hood/__init__.py": "", "hood/errors.py": "import hood.cli.app\n", "hood/cli/__init__.py": "",
                      "hood/cli/app.py": "", "hood/data/__init__.py": "", "hood/data/a.py": "from hood.data import b\n",
                      "hood/data/b.py": "def f():\n    from hood.data import a\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    proc = subprocess.run([sys.executable, str(REPO / ".ci" / "check_layers.py"), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "hood.errors (floor 0) imports hood.cli.app (floor 6)" in proc.stdout
    assert "import each other in a circle: hood.data.a, hood.data.b" in proc.stdout  # a lazy import counts too


def test_no_detector_module_reads_the_config() -> None:
    for path in sorted((REPO / "hood" / "detectors").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "hood.config" not in names, path.name


def test_every_registered_detector_is_one_file_and_one_registry_entry() -> None:
    from hood.detectors import DETECTORS

    files = {p.stem for p in (REPO / "hood" / "detectors").glob("*.py")} - {"__init__", "base", "combined", "gradients", "pixel_maps"}  # the helpers of the detectors
    modules = {cls.__module__.rsplit(".", 1)[1] for cls in DETECTORS.values()}
    assert modules == files  # no file without its registry line, and no registry line without its file
