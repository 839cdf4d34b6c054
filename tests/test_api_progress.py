"""``HeatmapDetector.fit`` says how far it is: progress bars on stderr, off with ``progress=False``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import class_image, save_random_classifier

import hood


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.stack([torch.from_numpy(class_image(c, i)).permute(2, 0, 1) for c in range(3) for i in range(4)])
    return ids, torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("progress", [True, False])
def test_fit_shows_progress_bars_unless_told_not_to(progress: bool, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    model = hood.load_classifier(save_random_classifier(tmp_path / "clf.pt"))
    ids, outliers = _data()
    capfd.readouterr()
    detector = hood.HeatmapDetector(model, device="cpu", batch_size=8).fit(ids, outliers, epochs=2, batch_size=8, progress=progress)
    out, err = capfd.readouterr()
    assert out == "" and len(detector.losses) == 2
    if progress:
        assert "decoder" in err and "features" in err.lower() and "0:00" in err  # each phase, with its time
    else:
        assert err == ""
