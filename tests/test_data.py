"""Data: folder and archive readers, ID sets with splits, flat OOD folders, the protocol's transforms,
the decoded-tensor cache and the built-in sets. Everything is synthetic and written into tmp_path."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import class_image, write_flat_folder, write_image_folder
from PIL import Image

from hood.data import builtin
from hood.data.sources import dataset_label, load_id_splits, load_image_set
from hood.data.transforms import denormalize, normalize
from hood.errors import DataError, DatasetMissingError


def chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1)


def zip_folder(src: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(src).as_posix())
    return dest


def check_tiny_id(splits: dict) -> None:
    """The id_folder fixture: 3 classes x 12 train / x 4 test, decoded pixel-exactly (PNG)."""
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (36, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (12, 3, 32, 32)
    assert train.classes == test.classes == ["class0", "class1", "class2"]
    assert train.labels.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    assert test.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(train.images[13], chw(class_image(1, 1)))
    assert torch.equal(test.images[8], chw(class_image(2, 100)))


def test_id_folder_with_train_and_test(id_folder: Path, tmp_path: Path) -> None:
    check_tiny_id(load_id_splits(str(id_folder), tmp_path, 32))


def test_id_targz_with_a_wrapper_folder(id_archive: Path, tmp_path: Path) -> None:
    check_tiny_id(load_id_splits(str(id_archive), tmp_path, 32))


@pytest.mark.parametrize("prefix", ["", "wrapped-set/"])
def test_id_zip_with_and_without_wrapper(prefix: str, id_folder: Path, tmp_path: Path) -> None:
    check_tiny_id(load_id_splits(str(zip_folder(id_folder, tmp_path / "id.zip", prefix)), tmp_path, 32))


def test_id_tar_without_compression(id_folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "id.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(id_folder / "train", arcname="train")
        tf.add(id_folder / "test", arcname="test")
    check_tiny_id(load_id_splits(str(path), tmp_path, 32))


def test_flat_ood_folder_and_archives(ood_folder: Path, tmp_path: Path) -> None:
    expect = [chw(np.asarray(Image.open(p))) for p in sorted(ood_folder.glob("*.png"))]
    tgz = tmp_path / "ood.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(ood_folder, arcname="tiny-ood")
    for spec, label in ((ood_folder, "tiny-ood"), (tgz, "ood"), (zip_folder(ood_folder, tmp_path / "ood.zip"), "ood")):
        s = load_image_set(str(spec), tmp_path, 32)
        assert s.images.shape == (12, 3, 32, 32) and s.labels is None
        assert all(torch.equal(a, b) for a, b in zip(s.images, expect, strict=True))
        assert s.name == label
    assert dataset_label(str(tgz)) == "ood" and dataset_label("uniform-noise") == "uniform-noise"


def test_unlabelled_set_from_an_id_set_is_its_test_split(id_folder: Path, tmp_path: Path) -> None:
    s = load_image_set(str(id_folder), tmp_path, 32)
    assert len(s) == 12 and s.labels is None


def test_select_picks_rows(ood_folder: Path, tmp_path: Path) -> None:
    full = load_image_set(str(ood_folder), tmp_path, 32)
    part = load_image_set(str(ood_folder), tmp_path, 32, select=lambda n: torch.tensor([1, 5, 7]))
    assert torch.equal(part.images, full.images[[1, 5, 7]])


def test_larger_images_resized_on_the_shorter_side_then_center_cropped(tmp_path: Path) -> None:
    # 128 x 64 (w x h): columns red | green | blue | red in quarters, with the top 8 rows black
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :32, 0] = 255
    img[:, 32:64, 1] = 255
    img[:, 64:96, 2] = 255
    img[:, 96:, 0] = 255
    img[:8] = 0
    d = tmp_path / "big"
    d.mkdir()
    Image.fromarray(img).save(d / "a.png")
    x = load_image_set(str(d), tmp_path, 32).images[0].int()  # 3 x 32 x 32
    # shorter side 64 -> 32 gives 64 x 32; the center crop keeps original columns 32..96 and ALL rows
    assert x.shape == (3, 32, 32)
    assert x[:, :3, :].max() < 30  # the black top band survives (a crop without resizing would lose it)
    body = x[:, 5:, :]
    assert (body[1, :, :15] > 200).all() and (body[2, :, :15] < 30).all()  # left half green
    assert (body[2, :, 17:] > 200).all() and (body[1, :, 17:] < 30).all()  # right half blue
    assert body[0].max() < 60  # no red: the outer quarters are cropped away, not squeezed in
    assert body[0, :, 1:31].max() < 5  # (only bilinear blending touches the outermost columns)


def test_portrait_and_small_images(tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    Image.fromarray(np.full((80, 40, 3), 90, np.uint8)).save(d / "portrait.jpg", quality=95)
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(d / "small.png")  # smaller: upscaled
    s = load_image_set(str(d), tmp_path, 32)
    assert s.images.shape == (2, 3, 32, 32)
    assert abs(s.images[0].float().mean() - 90) < 3 and (s.images[1] == 200).all()


def test_grayscale_becomes_three_channels(tmp_path: Path) -> None:
    d = tmp_path / "gray"
    d.mkdir()
    g = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    Image.fromarray(g, mode="L").save(d / "g.png")
    Image.fromarray(np.zeros((32, 32, 4), np.uint8) + 255, mode="RGBA").save(d / "rgba.png")
    s = load_image_set(str(d), tmp_path, 32)
    assert s.images.shape == (2, 3, 32, 32)
    gray = s.images[0]
    assert torch.equal(gray[0], torch.from_numpy(g)) and torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_normalization() -> None:
    x = torch.tensor([0, 51, 127, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    y = normalize(x)
    expect = (torch.tensor([0, 51, 127, 255]) / 255.0 - 0.5) / 0.5
    assert y.dtype == torch.float32 and torch.allclose(y.flatten(), expect, atol=1e-6)
    assert float(y.min()) == -1.0 and float(y.max()) == 1.0
    assert x.flatten().tolist() == [0, 51, 127, 255]  # the input is not modified in place
    assert torch.allclose(denormalize(y).flatten(), torch.tensor([0, 51, 127, 255]) / 255.0, atol=1e-6)


def test_decoded_tensor_cache_is_hit_on_the_second_load(id_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hood.data.readers as readers

    first = load_id_splits(str(id_archive), tmp_path, 32)
    assert list((tmp_path / "_cache").rglob("*.pt")), "nothing written to $HOOD_CACHE"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of read from the cache")

    monkeypatch.setattr(readers, "decode_image", no_decoding)
    second = load_id_splits(str(id_archive), tmp_path, 32)
    assert torch.equal(second["train"].images, first["train"].images)
    assert torch.equal(second["test"].labels, first["test"].labels) and second["train"].classes == first["train"].classes
    # another resolution is another cache entry
    with pytest.raises(AssertionError, match="decoded again"):
        load_id_splits(str(id_archive), tmp_path, 16)


def test_cache_notices_a_changed_folder(ood_folder: Path, tmp_path: Path) -> None:
    assert len(load_image_set(str(ood_folder), tmp_path, 32)) == 12
    write_flat_folder(ood_folder, count=14, seed=7)  # two more files
    assert len(load_image_set(str(ood_folder), tmp_path, 32)) == 14


def test_unreadable_files_skipped_and_strict(tmp_path: Path) -> None:
    d = write_flat_folder(tmp_path / "some", count=3)
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    s = load_image_set(str(d), tmp_path, 32)
    assert len(s) == 3 and s.skipped == ["broken.png"]
    with pytest.raises(DataError, match="broken.png"):
        load_image_set(str(d), tmp_path, 32, strict=True)


def test_data_errors(tmp_path: Path, ood_folder: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_image_set(str(tmp_path / "nope"), tmp_path, 32)
    with pytest.raises(DataError, match="uniform-noise"):  # a suggestion for a typo
        load_image_set("uniform-nois", tmp_path, 32)
    with pytest.raises(DataError, match="train"):  # a flat folder is no ID set
        load_id_splits(str(ood_folder), tmp_path, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        load_image_set(str(tmp_path / "empty"), tmp_path, 32)
    with pytest.raises(DatasetMissingError, match="hood download svhn"):
        load_image_set("svhn", tmp_path / "_data", 32)


def test_test_class_unknown_to_train(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    write_image_folder(root / "train", classes=2, per_class=2)
    write_image_folder(root / "test", classes=3, per_class=1)
    with pytest.raises(DataError, match="class2"):
        load_id_splits(str(root), tmp_path, 32)


def test_builtin_sets_shapes_and_determinism() -> None:
    digits = builtin.load_builtin("demo-digits", 32)
    assert digits["train"].images.shape == (1437, 3, 32, 32) and digits["test"].images.shape == (360, 3, 32, 32)
    assert digits["train"].classes == [str(i) for i in range(10)]
    assert set(digits["train"].labels.tolist()) == set(range(10))
    assert torch.equal(digits["train"].images[:, 0], digits["train"].images[:, 2])  # grey as RGB
    again = builtin.load_builtin("demo-digits", 32)
    assert torch.equal(again["test"].images, digits["test"].images) and torch.equal(again["test"].labels, digits["test"].labels)
    for name in ("uniform-noise", "gaussian-noise", "blobs"):
        a, b = builtin.load_builtin(name, 32), builtin.load_builtin(name, 32)
        assert a.images.shape == (2000, 3, 32, 32) and a.images.dtype == torch.uint8 and a.labels is None
        assert torch.equal(a.images, b.images)
    u = builtin.load_builtin("uniform-noise", 32).images.float()
    assert u.min() == 0 and u.max() == 255 and abs(u.mean() - 127.5) < 1
    g = builtin.load_builtin("gaussian-noise", 32).images.float()
    assert abs(g.mean() - 127.5) < 1 and 55 < g.std() < 70
    assert not torch.equal(u[:10], g[:10])
    assert builtin.load_builtin("no-such-set", 32) is None


def test_blobs_are_bright_shapes_on_black() -> None:
    """Outlier Exposure's recipe: blurred Bernoulli(0.7) pixels, everything under 0.75 black."""
    b = builtin.load_builtin("blobs", 32).images.float()
    black = (b == 0).float().mean()
    assert 0.6 < black < 0.95  # mostly black ground
    assert b[b > 0].min() >= 0.75 * 255 - 1  # nothing dim: shapes with definite edges
    # blobs, not speckle: a lit pixel's right-hand neighbour is lit far more often than the lit share
    lit = b > 0
    assert (lit[..., 1:] & lit[..., :-1]).float().mean() / lit[..., :-1].float().mean() > 2 * lit.float().mean()
    val = builtin.synthetic_set("blobs", seed=builtin.VAL_NOISE_SEED, suffix="-val")
    assert val.name == "blobs-val" and not torch.equal(val.images, builtin.load_builtin("blobs", 32).images)
    with pytest.raises(ValueError, match="no synthetic set"):
        builtin.synthetic_set("rademacher")


def test_builtin_sets_through_the_loaders(tmp_path: Path) -> None:
    s = load_image_set("uniform-noise", tmp_path, 16)
    assert s.images.shape == (2000, 3, 16, 16) and s.name == "uniform-noise"
    assert len(load_id_splits("demo-digits", tmp_path, 16)["train"]) == 1437


def test_corrupted_cifar_install_is_a_data_error(tmp_path: Path) -> None:
    d = tmp_path / "_data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for f in ("data_batch_1", "test_batch"):  # looks installed, fails torchvision's checksums
        (d / f).write_bytes(b"truncated")
    with pytest.raises(DataError, match="hood download cifar10"):
        load_id_splits("cifar10", tmp_path / "_data", 32)
