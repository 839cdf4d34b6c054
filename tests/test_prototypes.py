"""Prototype pairing (METHOD.md defects 1 and 4): every outlier gets ITS OWN nearest ID training sample
among those predicted as the same class, found by a batched search that chunking does not change."""

from __future__ import annotations

import pytest
import torch

from hood.engine.decoder_training import build_decoder_data
from hood.engine.features import FeatureSet
from hood.engine.prototypes import nearest_prototypes


def brute_force_k(ood_f: torch.Tensor, ood_p: torch.Tensor, id_f: torch.Tensor, id_p: torch.Tensor, k: int) -> list[list[int]]:
    """One outlier at a time: the k nearest same-predicted-class ID samples (any class if there is none),
    nearest first; the lower index first on exact ties (a stable sort)."""
    out = []
    for f, p in zip(ood_f, ood_p, strict=True):
        cand = [j for j in range(len(id_f)) if id_p[j] == p] or list(range(len(id_f)))
        out.append(sorted(cand, key=lambda j: float(((f - id_f[j]) ** 2).sum()))[:k])
    return out


def brute_force(ood_f: torch.Tensor, ood_p: torch.Tensor, id_f: torch.Tensor, id_p: torch.Tensor) -> torch.Tensor:
    """One outlier at a time: the nearest same-predicted-class ID sample (any class if there is none)."""
    return torch.tensor([row[0] for row in brute_force_k(ood_f, ood_p, id_f, id_p, 1)])


def scrambled(ood_p: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """The public implementation's pairing: prototypes collected class by class, then indexed in the
    order of the sampled outliers, so outlier i gets the i-th prototype of the class-sorted list."""
    by_class = [int(own[i]) for c in sorted(set(ood_p.tolist())) for i in range(len(ood_p)) if ood_p[i] == c]
    return torch.tensor(by_class)


def random_case(seed: int, n_id: int = 40, n_ood: int = 25, dim: int = 6, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    id_f = torch.randn(n_id, dim, generator=g)
    id_p = torch.randint(0, classes, (n_id,), generator=g)
    id_p[:classes] = torch.arange(classes)  # every class has ID samples
    ood_f = torch.randn(n_ood, dim, generator=g)
    ood_p = torch.randint(0, classes, (n_ood,), generator=g)
    return ood_f, ood_p, id_f, id_p


def test_hand_case_each_outlier_gets_its_own_prototype() -> None:
    # ID: class 0 at x = 0 and 10, class 1 at x = 5 and 20 (1-d features)
    id_f = torch.tensor([[0.0], [10.0], [5.0], [20.0]])
    id_p = torch.tensor([0, 0, 1, 1])
    # outliers interleave classes 1, 0, 1, 0
    ood_f = torch.tensor([[19.0], [9.0], [4.0], [1.0]])
    ood_p = torch.tensor([1, 0, 1, 0])
    got = nearest_prototypes(ood_f, ood_p, id_f, id_p)
    # 19 -> 20 (class 1, not 10 of class 0), 9 -> 10, 4 -> 5 (not 0: wrong class), 1 -> 0
    assert got.tolist() == [3, 1, 2, 0]
    # the public implementation would pair them as [1, 0, 3, 2]: every outlier with another's prototype
    assert scrambled(ood_p, got).tolist() == [1, 0, 3, 2]


def test_same_class_beats_a_nearer_sample_of_another_class() -> None:
    id_f = torch.tensor([[0.0, 0.0], [100.0, 100.0]])
    id_p = torch.tensor([0, 1])
    ood_f = torch.tensor([[0.1, 0.1]])
    assert nearest_prototypes(ood_f, torch.tensor([1]), id_f, id_p).tolist() == [1]
    assert nearest_prototypes(ood_f, torch.tensor([0]), id_f, id_p).tolist() == [0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_and_differs_from_scrambled(seed: int) -> None:
    ood_f, ood_p, id_f, id_p = random_case(seed)
    got = nearest_prototypes(ood_f, ood_p, id_f, id_p)
    ref = brute_force(ood_f, ood_p, id_f, id_p)
    assert torch.equal(got, ref)
    assert all(int(id_p[j]) == int(p) for j, p in zip(got, ood_p, strict=True))  # same predicted class
    assert not torch.equal(got, scrambled(ood_p, got))  # the scrambled pairing would differ here


def test_class_without_id_samples_falls_back_to_any_class() -> None:
    id_f = torch.tensor([[0.0], [10.0], [20.0]])
    id_p = torch.tensor([0, 0, 1])
    ood_f = torch.tensor([[11.0], [19.0], [1.0]])
    ood_p = torch.tensor([2, 1, 2])  # nothing in ID is predicted as class 2
    got = nearest_prototypes(ood_f, ood_p, id_f, id_p)
    assert got.tolist() == [1, 2, 0]
    assert torch.equal(got, brute_force(ood_f, ood_p, id_f, id_p))


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096])
def test_chunk_size_does_not_change_the_result(chunk: int) -> None:
    ood_f, ood_p, id_f, id_p = random_case(5, n_id=60, n_ood=50, classes=3)
    ref = nearest_prototypes(ood_f, ood_p, id_f, id_p, chunk=2048)
    assert torch.equal(nearest_prototypes(ood_f, ood_p, id_f, id_p, chunk=chunk), ref)
    assert torch.equal(ref, brute_force(ood_f, ood_p, id_f, id_p))


def test_large_offset_features_keep_exact_neighbours() -> None:
    # features with a large common offset: the expanded |q|^2 - 2qk + |k|^2 form must still rank exactly
    ood_f, ood_p, id_f, id_p = random_case(7)
    ood_f, id_f = ood_f * 1e-3 + 1e3, id_f * 1e-3 + 1e3
    assert torch.equal(nearest_prototypes(ood_f, ood_p, id_f, id_p), brute_force(ood_f.double(), ood_p, id_f.double(), id_p))


def test_decoder_data_targets_are_own_prototype_images() -> None:
    ood_f, ood_p, id_f, id_p = random_case(3, n_id=12, n_ood=9, classes=3)
    logits_of = lambda p: torch.nn.functional.one_hot(p, 3).float()  # noqa: E731 - preds = argmax(logits)
    id_images = torch.arange(12, dtype=torch.uint8)[:, None, None, None].expand(12, 3, 2, 2).contiguous()
    ood_images = (100 + torch.arange(9, dtype=torch.uint8))[:, None, None, None].expand(9, 3, 2, 2).contiguous()
    data, proto = build_decoder_data(
        id_images, ood_images, FeatureSet(torch.cat([id_f, ood_f]), logits_of(torch.cat([id_p, ood_p]))), torch.device("cpu")
    )
    assert torch.equal(proto, brute_force(ood_f, ood_p, id_f, id_p))
    assert data.n_id == 12 and len(data.images) == 21
    assert data.target_idx[:12].tolist() == list(range(12))  # ID rows are their own targets
    for i in range(9):
        row = 12 + i
        assert torch.equal(data.images[row], ood_images[i])
        assert torch.equal(data.feats.features[row], ood_f[i])
        assert torch.equal(data.images[data.target_idx[row]], id_images[proto[i]])


def exact_nearest(ood_f: torch.Tensor, ood_p: torch.Tensor, id_f: torch.Tensor, id_p: torch.Tensor) -> torch.Tensor:
    """Vectorized reference: float64 differences (not the |q|^2 - 2qk + |k|^2 expansion)."""
    q, k = ood_f.double(), id_f.double()
    d = ((q[:, None, :] - k[None, :, :]) ** 2).sum(-1)
    d[ood_p[:, None] != id_p[None, :]] = float("inf")
    return d.argmin(1)


def _screen_modes() -> list:
    """The search's code paths: exact float64, and (where hood has it) low-precision screening."""
    import hood.engine.prototypes as protos

    return [None, torch.bfloat16] if hasattr(protos, "_screen_dtype") else [None]


@pytest.mark.parametrize("screen", _screen_modes())
@pytest.mark.parametrize("kind", ["spread", "near_duplicates", "relu_offset"])
def test_larger_search_is_exact(kind: str, screen, monkeypatch: pytest.MonkeyPatch) -> None:
    import hood.engine.prototypes as protos

    if hasattr(protos, "_screen_dtype"):
        monkeypatch.setattr(protos, "_screen_dtype", lambda: screen)
    g = torch.Generator().manual_seed(11)
    n_id, n_ood, dim = 300, 120, 64
    id_f = torch.randn(n_id, dim, generator=g)
    id_p = torch.randint(0, 2, (n_id,), generator=g)
    ood_p = torch.randint(0, 2, (n_ood,), generator=g)
    if kind == "spread":
        ood_f = torch.randn(n_ood, dim, generator=g)
    elif kind == "near_duplicates":  # ID rows in near-identical pairs, outliers a hair from one of them
        id_f[1::2] = id_f[0::2] + 1e-6 * torch.randn(n_id // 2, dim, generator=g)
        id_p[1::2] = id_p[0::2]
        src = torch.randint(0, n_id, (n_ood,), generator=g)
        ood_f = id_f[src] + 1e-5 * torch.randn(n_ood, dim, generator=g)
        ood_p = id_p[src]
    else:  # post-ReLU features: a large common component, small differences
        id_f = id_f.abs() * 0.05 + 3.0
        ood_f = torch.randn(n_ood, dim, generator=g).abs() * 0.05 + 3.0
    got = nearest_prototypes(ood_f, ood_p, id_f, id_p, chunk=50)
    ref = exact_nearest(ood_f, ood_p, id_f, id_p)
    assert torch.equal(got, ref), f"{int((got != ref).sum())} of {n_ood} outliers paired with a farther prototype"


@pytest.mark.parametrize("k", [2, 5])
def test_k_nearest_prototypes_are_the_k_nearest_of_the_same_class_nearest_first(k: int) -> None:
    ood_f, ood_p, id_f, id_p = random_case(7, n_id=60, n_ood=30, classes=3)
    got = nearest_prototypes(ood_f, ood_p, id_f, id_p, chunk=7, k=k)
    assert got.shape == (30, k)
    assert got.tolist() == brute_force_k(ood_f.double(), ood_p, id_f.double(), id_p, k)
    assert torch.equal(got[:, 0], nearest_prototypes(ood_f, ood_p, id_f, id_p))  # the first is the paper's


def test_a_class_shorter_than_k_repeats_its_ranking_from_the_nearest() -> None:
    id_f = torch.tensor([[0.0], [1.0], [3.0], [10.0], [11.0]])
    id_p = torch.tensor([0, 0, 0, 1, 1])
    got = nearest_prototypes(torch.tensor([[0.9], [10.2]]), torch.tensor([0, 1]), id_f, id_p, k=4)
    assert got.tolist() == [[1, 0, 2, 1], [3, 4, 3, 4]]


def test_decoder_data_with_k_prototypes_targets_their_mean_image() -> None:
    ood_f, ood_p, id_f, id_p = random_case(4, n_id=12, n_ood=9, classes=3)
    logits_of = lambda p: torch.nn.functional.one_hot(p, 3).float()  # noqa: E731 - preds = argmax(logits)
    id_images = (10 * torch.arange(12, dtype=torch.uint8))[:, None, None, None].expand(12, 3, 2, 2).contiguous()
    ood_images = (200 + torch.arange(9, dtype=torch.uint8))[:, None, None, None].expand(9, 3, 2, 2).contiguous()
    data, proto = build_decoder_data(
        id_images, ood_images, FeatureSet(torch.cat([id_f, ood_f]), logits_of(torch.cat([id_p, ood_p]))), torch.device("cpu"),
        prototype_k=3,
    )
    assert proto.tolist() == brute_force_k(ood_f, ood_p, id_f, id_p, 3)
    assert data.n_id == 12 and data.n_ood == 9 and len(data.target_idx) == 21
    assert data.target_idx[:12].tolist() == list(range(12))  # ID rows stay their own targets
    for i in range(9):
        row = 12 + i
        assert torch.equal(data.images[row], ood_images[i])  # the outlier itself is unchanged
        want = round(sum(10 * int(j) for j in proto[i]) / 3)  # the mean of its 3 prototypes' grey levels
        assert torch.equal(data.images[data.target_idx[row]], torch.full((3, 2, 2), want, dtype=torch.uint8))


def test_decoder_data_refuses_features_that_do_not_match_the_images() -> None:
    g = torch.Generator().manual_seed(5)
    id_images = torch.randint(0, 256, (30, 3, 4, 4), generator=g, dtype=torch.uint8)
    ood_images = torch.randint(0, 256, (12, 3, 4, 4), generator=g, dtype=torch.uint8)
    feats = FeatureSet(torch.randn(42, 4, generator=g), torch.randn(42, 3, generator=g))
    build_decoder_data(id_images, ood_images, feats, torch.device("cpu"))  # one row per image: accepted
    with pytest.raises(ValueError, match="41 feature rows for 30 ID, 12 outlier and 0 composite images"):
        build_decoder_data(id_images, ood_images, feats.take(torch.arange(41)), torch.device("cpu"))
