"""Feature extraction leaves the classifier usable for gradients (ODIN, further training)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hood.engine.features import extract_features
from hood.models.registry import build_classifier


def test_extract_features_leaves_trainable_weights() -> None:
    """Converting the model's memory layout inside inference mode would turn its weights into inference
    tensors, after which backward fails; extraction must leave ordinary parameters behind."""
    model = build_classifier("wrn10_2", 3)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    feats = extract_features(model, images, torch.device("cpu"), batch_size=4, num_maps=2)
    assert feats.features.shape == (6, model.feature_dim) and len(feats.maps) == 2
    assert not any(p.is_inference() for p in model.parameters())
    model.train()
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
    assert x.grad is not None and model.conv1.weight.grad is not None


def test_features_match_a_plain_forward() -> None:
    model = build_classifier("wrn10_2", 3).eval()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    feats = extract_features(model, images, torch.device("cpu"), batch_size=2)
    with torch.no_grad():
        ref = model.forward_all(images.float() / 127.5 - 1.0)
    torch.testing.assert_close(feats.features, ref.features, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(feats.logits, ref.logits, rtol=1e-4, atol=1e-4)


def test_map_rows_keep_the_maps_of_those_rows_only() -> None:
    """Across batch borders and in any order given; the features of every row; taking a row whose maps
    were not kept is an error, not a silent mismatch; rows outside the images are refused."""
    import pytest

    model = build_classifier("wrn10_2", 3).eval()
    images = torch.randint(0, 256, (11, 3, 32, 32), dtype=torch.uint8)
    full = extract_features(model, images, torch.device("cpu"), batch_size=4, num_maps=2)
    some = extract_features(model, images, torch.device("cpu"), batch_size=4, num_maps=2, map_rows=torch.tensor([9, 2, 3, 4, 2]))
    assert some.map_rows.tolist() == [2, 3, 4, 9] and [m.shape[0] for m in some.maps] == [4, 4]
    torch.testing.assert_close(some.features, full.features)
    rows = torch.tensor([4, 9, 2])
    for a, b in zip(some.take(rows).maps, full.take(rows).maps, strict=True):
        assert torch.equal(a, b)
    assert some.take(rows).map_rows is None  # the taken rows hold all their maps
    with pytest.raises(ValueError, match="rows without stage maps"):
        some.take(torch.tensor([2, 5]))
    with pytest.raises(ValueError, match="map_rows must index the 11 images"):
        extract_features(model, images, torch.device("cpu"), num_maps=2, map_rows=torch.tensor([11]))
    assert extract_features(model, images[:3], torch.device("cpu"), map_rows=torch.tensor([1])).maps is None


def test_taking_one_ascending_run_of_rows_views_the_maps_instead_of_copying() -> None:
    from hood.engine.features import FeatureSet

    maps = [torch.arange(40, dtype=torch.float16).reshape(10, 4)]
    feats = FeatureSet(torch.randn(10, 3), torch.randn(10, 2), maps)
    run = feats.take(torch.arange(3, 7))
    assert run.maps[0].data_ptr() == maps[0][3].data_ptr() and torch.equal(run.maps[0], maps[0][3:7])
    other = feats.take(torch.tensor([3, 5, 6]))
    assert other.maps[0].data_ptr() != maps[0][3].data_ptr() and torch.equal(other.maps[0], maps[0][[3, 5, 6]])
    kept = FeatureSet(feats.features, feats.logits, [maps[0][[2, 4, 5, 6]]], map_rows=torch.tensor([2, 4, 5, 6]))
    assert torch.equal(kept.take(torch.tensor([4, 5, 6])).maps[0], maps[0][[4, 5, 6]])  # positions 1..3: a view
    assert torch.equal(kept.take(torch.tensor([6, 2])).maps[0], maps[0][[6, 2]])
