"""``.ci/check_refs.sh`` (run by ``make lint``): product files that point outside the product fail it."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "check_refs.sh"


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), str(root)], capture_output=True, text=True, timeout=60)


def test_check_refs_lists_each_outside_reference_and_fails(tmp_path: Path) -> None:
    (tmp_path / "hood").mkdir()
    (tmp_path / "hood" / "a.py").write_text('"""Scores as the paper does."""\n')
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "x.yaml").write_text("name: x  # plain\n")
    (tmp_path / "README.md").write_text("Run `hood demo`.\n")
    clean = _check(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (tmp_path / "hood" / "a.py").write_text('"""See METHOD.md."""\n')
    (tmp_path / "configs" / "x.yaml").write_text("# chosen in issue 7\nname: x\n")
    (tmp_path / "README.md").write_text("cp ../shared/data/x .carry/\n")
    (tmp_path / "Makefile").write_text("all:\n\ttrue  # the issue tracker is fine, an issue number is not\n")
    dirty = _check(tmp_path)
    assert dirty.returncode == 1
    hits = dirty.stdout.splitlines()
    assert sorted(h.split(":")[0] for h in hits) == ["README.md", "configs/x.yaml", "hood/a.py"]
    assert "3 line(s)" in dirty.stderr
