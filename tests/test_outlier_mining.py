"""Outlier mining (decoder.ood_candidates): which rows are kept, how many are drawn, and the job's record."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hood.engine.outlier_mining import candidate_count, most_confident


def test_most_confident_keeps_the_highest_max_softmax_rows_in_row_order() -> None:
    logits = torch.tensor([
        [0.0, 0.0, 0.0],  # uniform: confidence 1/3
        [9.0, 0.0, 0.0],  # the most confident
        [2.0, 1.0, 0.0],
        [0.0, 0.0, 5.0],  # second
        [1.0, 1.0, 0.0],
    ])
    assert most_confident(logits, 2).tolist() == [1, 3]
    assert most_confident(logits, 3).tolist() == [1, 2, 3]
    assert most_confident(logits, 5).tolist() == [0, 1, 2, 3, 4]


def test_most_confident_breaks_ties_by_the_lower_row() -> None:
    logits = torch.zeros(6, 4)
    logits[4, 0] = 3.0
    assert most_confident(logits, 3).tolist() == [0, 1, 4]


@pytest.mark.parametrize("keep", [0, 6])
def test_most_confident_rejects_an_impossible_count(keep: int) -> None:
    with pytest.raises(ValueError, match="cannot keep"):
        most_confident(torch.zeros(5, 3), keep)


@pytest.mark.parametrize(
    ("pool", "num_ood", "candidates", "expected"),
    [(100, 10, 1, 10), (100, 10, 4, 40), (25, 10, 4, 25), (8, 10, 4, 10)],
)
def test_candidate_count_is_c_times_num_ood_within_the_pool(pool: int, num_ood: int, candidates: int, expected: int) -> None:
    assert candidate_count(pool, num_ood, candidates) == expected


def test_train_decoder_mines_the_most_confident_of_the_candidate_draw(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    from test_decoder import _trained_with

    from hood.data.sources import load_image_set
    from hood.engine.decoder_training import sample_ood_indices
    from hood.engine.features import extract_features

    _, saved, clf, _, _ = _trained_with(id_folder, ood_folder, tiny_classifier, tmp_path, ood_candidates=2)
    candidates = sample_ood_indices(12, 10, 0)  # the fixture pool holds 12 images; num_ood 5, two times drawn
    pool = load_image_set(str(ood_folder), tmp_path, 32).subset(candidates)
    logits = extract_features(clf.model, pool.images, torch.device("cpu")).logits
    expected = candidates[most_confident(logits, 5)].tolist()
    assert saved["ood_candidates"] == 2 and saved["indices"] == expected
    assert len(saved["prototype_id_rows"]) == 5
    confidence = logits.softmax(1).amax(1)
    kept = [i for i, c in enumerate(candidates.tolist()) if c in expected]
    dropped = [i for i in range(10) if i not in kept]
    assert confidence[kept].min() >= confidence[dropped].max()


def test_train_decoder_without_mining_draws_the_papers_random_sample(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    from test_decoder import _trained_with

    from hood.engine.decoder_training import sample_ood_indices

    _, saved, *_ = _trained_with(id_folder, ood_folder, tiny_classifier, tmp_path)
    assert saved["ood_candidates"] == 1 and saved["indices"] == sample_ood_indices(12, 5, 0).tolist()
