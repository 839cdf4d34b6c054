"""Named benchmarks end to end against a local HTTP server: ``hood download BENCHMARK`` fetches small packs in the
real layouts (CIFAR python batches, ODIN/DTD/Places archives, an SVHN .mat, OpenOOD's ``benchmark_imglist`` zip
and image packs), ``hood evaluate --benchmark`` scores them with the heatmap and baselines, and every failure
(a list naming a missing image, a pack with the wrong checksum, a set not downloaded, no validation split) is one
line naming the fix. The registry's URLs are redirected with HOOD_MIRROR; nothing touches the internet.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import class_image, invoke, one_line_error, save_random_classifier, tar_bytes, write_flat_folder, zip_bytes
from http_server import Faults, Server
from PIL import Image

from hood.data import benchmarks, registry
from hood.data import download as dl
from hood.data.imglist import read_list

REAL = registry.load_manifest()
CLASSES = [f"c{i}" for i in range(10)]
N_TRAIN, N_TEST = 40, 20  # the stand-in CIFAR-10: len(ID test)/5 = 4 images of each paper OOD set


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _noise(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _cifar10() -> bytes:
    """CIFAR-10's python batches, ten classes, a few images each, pickled as the publisher does."""
    def batch(n: int, offset: int) -> bytes:
        labels = [i % 10 for i in range(n)]
        data = np.stack([class_image(c, offset + i).transpose(2, 0, 1).reshape(-1) for i, c in enumerate(labels)])
        return pickle.dumps({"data": data, "labels": labels}, protocol=2)
    meta = pickle.dumps({"label_names": CLASSES}, protocol=2)
    return tar_bytes({"cifar-10-batches-py/data_batch_1": batch(N_TRAIN, 0), "cifar-10-batches-py/test_batch": batch(N_TEST, 500),
                 "cifar-10-batches-py/batches.meta": meta})


def _svhn_mat(n: int) -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"X": np.random.default_rng(3).integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": np.ones((n, 1), dtype=np.uint8)})
    return buf.getvalue()


def _folder_tar(top: str, n: int, seed: int, gz: bool = True) -> bytes:
    return tar_bytes({f"{top}/img{i:03d}.png": _png(_noise(seed + i)) for i in range(n)}, gz)


# OpenOOD: each pack unpacks to <pack>/..., each list names <pack>/relative/path label
PACK_IMAGES = {
    "cifar10": [f"cifar10/test/{c}/{i:04d}.png" for i in range(2) for c in CLASSES[:9]],  # 18 images
    "cifar100": [f"cifar100/test/apple/{i:04d}.png" for i in range(6)],
    "tin": [f"tin/test/n0144/{i:04d}.JPEG" for i in range(11)],
    "mnist": [f"mnist/test/7/{i:04d}.png" for i in range(5)],
    "svhn": [f"svhn/test/{i:05d}.png" for i in range(6)],
    "texture": [f"texture/banded/banded_{i:04d}.jpg" for i in range(5)],
    "places365": [f"places365/airfield/{i:08d}.jpg" for i in range(6)],
}
TEST_LISTS = {"cifar100": 6, "tin": 7, "mnist": 5, "svhn": 6, "texture": 5, "places365": 6}


def _pack(name: str) -> bytes:
    """A pack's zip: its images under ``<pack>/`` (one wrapping folder, lifted when installed), except SVHN's,
    which holds ``test/`` alone (lifted too: its list's paths are then found one folder less deep)."""
    members = {}
    for i, rel in enumerate(PACK_IMAGES[name]):
        image = class_image(CLASSES.index(rel.split("/")[2]), 900 + i) if name == "cifar10" else _noise(100 * len(name) + i)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG" if rel.endswith(("jpg", "JPEG")) else "PNG")
        members[rel.split("/", 1)[1] if name == "svhn" else rel] = buf.getvalue()
    return zip_bytes(members)


def _lists(extra_line: str = "") -> bytes:
    """benchmark_imglist/cifar10/*.txt: ID test 12 and val 6 of the CIFAR-10 pack (disjoint), the OOD test lists,
    and the OOD validation list of 4 Tiny ImageNet images disjoint from its test list."""
    cifar = PACK_IMAGES["cifar10"]
    lines = {
        "test_cifar10": [f"{p} {CLASSES.index(p.split('/')[2])}" for p in cifar[:12]],
        "val_cifar10": [f"{p} {CLASSES.index(p.split('/')[2])}" for p in cifar[12:]],
        "val_tin": [f"{p} -1" for p in PACK_IMAGES["tin"][7:]],
    }
    for name, n in TEST_LISTS.items():
        lines[f"test_{name}"] = [f"{p} -1" for p in PACK_IMAGES[name][:n]]
    if extra_line:
        lines["test_tin"].append(extra_line)
    return zip_bytes({f"benchmark_imglist/cifar10/{k}.txt": ("\n".join(v) + "\n").encode() for k, v in lines.items()})


PAPER_SETS = {"isun": _folder_tar("iSUN", 8, 10), "lsun-c": _folder_tar("LSUN", 8, 20), "lsun-r": _folder_tar("LSUN_resize", 8, 30),
              "textures": tar_bytes({f"dtd/images/banded/b{i}.png": _png(_noise(40 + i)) for i in range(8)}),
              "places365": _folder_tar("val_256", 8, 50, gz=False), "svhn": _svhn_mat(8)}


def _payloads(lists: bytes) -> dict[str, bytes]:
    """Registry set -> the bytes of its one file."""
    out = {"cifar10": _cifar10(), **PAPER_SETS, "openood-imglist": lists}
    out.update({f"openood-pack-{name}": _pack(name) for name in PACK_IMAGES})
    return out


def _file_name(name: str) -> str:
    return REAL["sets"][name]["files"][0]["name"]


def _manifest(payloads: dict[str, bytes]) -> dict[str, Any]:
    """The real manifest and benchmarks, with the stand-ins' md5 and size where the publisher gives a checksum;
    the OpenOOD files keep their first-fetch rule."""
    fake = copy.deepcopy(REAL)
    for name, data in payloads.items():
        spec = fake["sets"][name]["files"][0]
        if spec.get("checksum") != registry.FIRST_FETCH:
            spec.update(md5=hashlib.md5(data).hexdigest(), size=len(data), sha256=None)
    return fake


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every benchmark set downloaded through `hood download` from the local server, a random 10-class
    classifier and a one-epoch decoder trained on the stand-in CIFAR-10."""
    from hood.config import resolve
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    base = tmp_path_factory.mktemp("bench")
    payloads = _payloads(_lists())
    fake = _manifest(payloads)
    srv = Server({_file_name(n): d for n, d in payloads.items()}).start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "load_manifest", lambda: fake)
        mp.setattr(dl, "RETRY_DELAYS", (0.0,))
        mp.setenv("HOOD_MIRROR", srv.base_url + "/")
        mp.setenv("HOOD_CACHE", str(base / "_cache"))
        mp.chdir(base)
        root = base / "data"
        for name in ("paper-cifar10", "openood-cifar10"):
            res = invoke("download", name, "--root", str(root))
            assert res.exit_code == 0, res.output
        clf = save_random_classifier(base / "clf.pt", num_classes=10)
        aux = write_flat_folder(base / "aux", count=12)
        cfg = resolve(None, {"data.id": "cifar10", "data.aux": str(aux), "data.root": str(root), "model.arch": "wrn10_2",
                             "model.classifier": str(clf), "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 12,
                             "run.device": "cpu", "run.num_threads": 1, "run.runs_dir": str(base / "runs"),
                             "run.out": str(base / "runs" / "decoder")}, None)
        run = train_decoder(cfg, None, create_run(cfg, "train-decoder"))
    yield {"root": root, "server": srv, "manifest": fake, "payloads": payloads, "run": run.path, "clf": clf, "base": base}
    srv.stop()


@pytest.fixture
def bench_env(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(registry, "load_manifest", lambda: world["manifest"])
    monkeypatch.setattr(dl, "RETRY_DELAYS", (0.0,))
    monkeypatch.setenv("HOOD_MIRROR", world["server"].base_url + "/")
    monkeypatch.setenv("HOOD_CACHE", str(world["base"] / "_cache"))
    return world


def _evaluate(env: dict[str, Any], tmp_path: Path, *args: str, root: Path | None = None) -> Any:
    """``hood evaluate ARGS`` on a private copy of the decoder run, on the CPU, one thread, as JSON."""
    run = tmp_path / "run"
    if not run.exists():
        shutil.copytree(env["run"], run)
    return invoke("evaluate", "--run", str(run), "--data-root", str(root or env["root"]), "--device", "cpu", "-q", "--json",
                  "--set", "run.num_threads=1", "--set", "evaluate.params.knn.k=2", *args)


# --- the registry's entries ---------------------------------------------------------------------------


def test_the_five_benchmarks_are_valid_data_and_need_registered_sets() -> None:
    assert benchmarks.names() == ["paper-cifar10", "paper-cifar100", "paper-tinyimagenet", "openood-cifar10", "openood-cifar100"]
    for name in benchmarks.names():
        b = benchmarks.get(name)
        assert all(registry.entry(n) is not None for n in b.needs())
    oo = benchmarks.get("openood-cifar10")
    assert oo.fpr_convention == "ood" and oo.groups() == {"near": ["cifar100", "tin"], "far": ["mnist", "svhn", "texture", "places365"]}
    assert [s.count for s in oo.ood] == [9000, 7793, 70000, 26032, 5640, 35195] and oo.id_test.count == 9000 and oo.has_validation
    assert [s.count for s in benchmarks.get("openood-cifar100").ood][1:] == [6526, 70000, 26032, 5640, 33773]
    paper = benchmarks.get("paper-cifar10")
    assert paper.fpr_convention == "id" and not paper.has_validation and paper.id_test is None
    assert [s.source for s in paper.ood] == ["isun", "lsun-c", "lsun-r", "svhn", "textures", "places365"]
    assert [s.source for s in benchmarks.get("paper-tinyimagenet").ood] == ["inaturalist", "sun", "textures"]
    for name in benchmarks.get("openood-cifar10").needs():  # no checksum is invented for OpenOOD's files
        for f in registry.entry(name)["files"]:
            assert (f.get("checksum") == registry.FIRST_FETCH) == name.startswith("openood-") and (f.get("md5") is None) == name.startswith("openood-")


def test_a_malformed_benchmark_entry_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = copy.deepcopy(REAL)
    fake["benchmarks"]["openood-cifar10"]["ood"][0]["pack"] = "no-such-pack"
    fake["benchmarks"]["paper-cifar10"]["fpr_convention"] = "tpr"
    monkeypatch.setattr(registry, "load_manifest", lambda: fake)
    with pytest.raises(benchmarks.BenchmarkError, match=r"openood-cifar10', ood\[0\]: pack must name a registered set"):
        benchmarks.get("openood-cifar10")
    with pytest.raises(benchmarks.BenchmarkError, match="fpr_convention must be one of id, ood"):
        benchmarks.get("paper-cifar10")
    with pytest.raises(benchmarks.BenchmarkError, match="unknown benchmark 'openood-cifar1'.*did you mean"):
        benchmarks.get("openood-cifar1")


def test_a_user_registry_may_mark_a_file_first_fetch_but_not_invent_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"role": "ood", "layout": "images", "dir": "mine", "files": [{"name": "m.zip", "url": "https://x.org/m.zip", "format": "zip",
                                                                          "checksum": "first-fetch"}]}
    path = tmp_path / "reg.json"
    path.write_text(json.dumps({"sets": {"mine": entry}}))
    monkeypatch.setenv("HOOD_REGISTRY", str(path))
    assert registry.entry("mine")["files"][0]["checksum"] == "first-fetch"
    entry["files"][0]["md5"] = "0" * 32
    path.write_text(json.dumps({"sets": {"mine": entry}}))
    with pytest.raises(registry.RegistryError, match="drop one or the other"):
        registry.load_manifest()
    entry["files"][0].update(md5=None, checksum="trust-me")
    path.write_text(json.dumps({"sets": {"mine": entry}}))
    with pytest.raises(registry.RegistryError, match="checksum may only be 'first-fetch'"):
        registry.load_manifest()


# --- download -----------------------------------------------------------------------------------------


def test_download_lists_benchmarks_and_their_sizes(bench_env: dict[str, Any], tmp_path: Path) -> None:
    res = invoke("download", "--list", "--root", str(bench_env["root"]), "--json")
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["openood-cifar10"]["role"] == "benchmark" and rows["openood-cifar10"]["state"] == "present"
    assert rows["openood-cifar10"]["size"] is None  # OpenOOD publishes no sizes
    assert rows["paper-cifar100"]["state"] == "1 of 7 sets missing"  # cifar100 was never fetched
    paper = sum(len(bench_env["payloads"][n]) for n in benchmarks.get("paper-cifar10").needs())
    assert rows["paper-cifar10"]["size"] == paper
    res = invoke("download", "paper-cifar10", "--root", str(tmp_path / "fresh"))
    assert res.exit_code == 0, res.output
    assert "paper-cifar10 reads 7 sets; to fetch:" in res.stderr and "isun" in res.stderr and "to fetch" in res.stderr
    assert res.stdout.count(": installed") == 7
    res = invoke("evaluate", "--benchmark", "list", "--data-root", str(bench_env["root"]))
    assert res.exit_code == 0 and "openood-cifar100" in res.stdout and "no validation split (use hood's)" in res.stdout
    res = invoke("evaluate", "--benchmark", "list", "--data-root", str(bench_env["root"]), "--json")
    assert res.exit_code == 0 and {r["name"]: r["state"] for r in json.loads(res.stdout)}["openood-cifar10"] == "present"


def test_first_fetch_files_are_pinned_and_held_to_it(bench_env: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "data"
    res = invoke("download", "openood-pack-svhn", "--root", str(root))
    assert res.exit_code == 0, res.output
    pins = dl.read_pins(root, "openood-pack-svhn")
    assert pins["svhn.zip"]["sha256"] == hashlib.sha256(bench_env["payloads"]["openood-pack-svhn"]).hexdigest()
    srv = Server({"svhn.zip": _pack("mnist")}).start()  # another mirror serving other bytes
    try:
        res = invoke("download", "openood-pack-svhn", "--force", "--root", str(root), "--url", srv.url("svhn.zip"))
    finally:
        srv.stop()
    one_line_error(res, 2, "openood-pack-svhn", "failed verification", "expects 19,", "nothing was extracted")
    assert dl.verify_installed("openood-pack-svhn", root).state == "verified"  # the installed copy is untouched


def test_a_pack_without_a_checksum_resumes_and_falls_back_to_its_mirror(bench_env: dict[str, Any], tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = bench_env["payloads"]["openood-pack-texture"]
    srv = Server({"texture.zip": data}, Faults(drop_after=len(data) // 3, drops=1)).start()
    fake = copy.deepcopy(bench_env["manifest"])
    fake["sets"]["openood-pack-texture"]["files"][0].update(url="http://127.0.0.1:9/texture.zip", mirrors=[srv.url("texture.zip")])
    monkeypatch.setattr(registry, "load_manifest", lambda: fake)
    monkeypatch.delenv("HOOD_MIRROR")
    try:
        res = invoke("download", "openood-pack-texture", "--root", str(tmp_path / "d"))
    finally:
        srv.stop()
    assert res.exit_code == 0, res.output
    ranges = [r for path, r, _ in srv.requests if path == "texture.zip"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 3}-"  # the second request resumed
    assert dl.read_pins(tmp_path / "d", "openood-pack-texture")["texture.zip"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_html_page_for_an_unpinned_file_is_refused(bench_env: dict[str, Any], tmp_path: Path) -> None:
    srv = Server({"tin.zip": b"<!DOCTYPE html><html>Google Drive can't scan this file for viruses</html>"}).start()
    try:
        res = invoke("download", "openood-pack-tin", "--root", str(tmp_path / "d"), "--url", srv.url("tin.zip"))
    finally:
        srv.stop()
    one_line_error(res, 2, "openood-pack-tin", "HTML page")
    assert not (tmp_path / "d" / "openood").exists() and dl.read_pins(tmp_path / "d", "openood-pack-tin") == {}


def test_a_pack_with_the_wrong_checksum_is_refused_before_unpacking(bench_env: dict[str, Any], tmp_path: Path) -> None:
    tampered = bytearray(PAPER_SETS["isun"])
    tampered[100] ^= 0xFF  # the same size, other bytes: only the checksum can tell
    srv = Server({"iSUN.tar.gz": bytes(tampered)}).start()
    try:
        res = invoke("download", "isun", "--root", str(tmp_path / "d"), "--url", srv.url("iSUN.tar.gz"))
    finally:
        srv.stop()
    one_line_error(res, 2, "isun", "md5 mismatch", "nothing was extracted")
    assert not (tmp_path / "d" / "isun").exists()


# --- evaluate -----------------------------------------------------------------------------------------


def test_openood_benchmark_table_groups_and_record(bench_env: dict[str, Any], tmp_path: Path) -> None:
    res = _evaluate(bench_env, tmp_path, "--benchmark", "openood-cifar10", "--methods", "heatmap,vim,knn")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["fpr_convention"] == "ood" and out["benchmark"]["name"] == "openood-cifar10" and out["n_id"] == 12
    for m in ("heatmap", "vim", "knn"):
        assert {s: v["n"] for s, v in out["results"][m].items() if s != "mean"} == TEST_LISTS  # the lists' counts
        near = out["groups"][m]["near"]
        assert near["n"] == 13 and near["auroc"] == pytest.approx(np.mean([out["results"][m][s]["auroc"] for s in ("cifar100", "tin")]))
        assert set(out["groups"][m]) == {"near", "far"}
    root = bench_env["root"]
    lists = out["benchmark"]["lists"]
    assert lists["cifar10/test_tin.txt"]["sha256"] == hashlib.sha256((root / "openood/benchmark_imglist/cifar10/test_tin.txt").read_bytes()).hexdigest()
    assert lists["cifar10/test_cifar10.txt"]["images"] == 12
    assert out["benchmark"]["installed_sha256"]["openood-imglist"] == [hashlib.sha256(bench_env["payloads"]["openood-imglist"]).hexdigest()]
    assert any("lists 7 images, the published protocol 7,793" in n for n in out["notes"])
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["groups"] == out["groups"] and saved["benchmark"]["name"] == "openood-cifar10"
    assert "heatmap,far (mean),auroc" in (tmp_path / "run" / "results.csv").read_text().replace('"', "")

    table = _evaluate(bench_env, tmp_path, "--benchmark", "openood-cifar10", "--methods", "vim,knn", "--fpr-convention", "id")
    assert table.exit_code == 0, table.output
    assert json.loads(table.stdout)["fpr_convention"] == "id"  # the other convention on request
    shown = invoke("evaluate", "--run", str(tmp_path / "run"), "--data-root", str(root), "--device", "cpu", "-q", "--benchmark",
                   "openood-cifar10", "--methods", "vim,knn", "--set", "evaluate.params.knn.k=2", "--set", "run.num_threads=1")
    assert shown.exit_code == 0, shown.output
    assert "near (mean)" in shown.stdout and "far (mean)" in shown.stdout and "benchmark openood-cifar10" in shown.stdout


def test_paper_benchmark_takes_a_fifth_of_the_id_test_split(bench_env: dict[str, Any], tmp_path: Path) -> None:
    res = _evaluate(bench_env, tmp_path, "--benchmark", "paper-cifar10", "--methods", "heatmap,vim,knn")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["fpr_convention"] == "id" and out["n_id"] == N_TEST and "groups" not in out
    for m in ("heatmap", "vim", "knn"):
        assert {s: v["n"] for s, v in out["results"][m].items()} == {
            "isun": 4, "lsun-c": 4, "lsun-r": 4, "svhn": 4, "textures": 4, "places365": 4, "mean": 24}
    assert out["benchmark"]["rule"].startswith("len(ID test)/5") and out["benchmark"]["lists"] == {}
    assert out["benchmark"]["installed_sha256"]["svhn"] == [hashlib.sha256(PAPER_SETS["svhn"]).hexdigest()]


def test_openood_validation_scores_its_own_validation_lists(bench_env: dict[str, Any], tmp_path: Path) -> None:
    res = _evaluate(bench_env, tmp_path, "--benchmark", "openood-cifar10", "--validation", "--methods", "vim,knn")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_id"] == 6 and {s: v["n"] for s, v in out["results"]["vim"].items()} == {"tin-val": 4, "mean": 4}
    assert out["benchmark"]["split"] == "validation" and set(out["benchmark"]["lists"]) == {"cifar10/val_cifar10.txt", "cifar10/val_tin.txt"}
    assert (tmp_path / "run" / "validation.json").is_file() and (tmp_path / "run" / "scores" / "vim" / "val-tin-val.npz").is_file()


def test_the_paper_protocol_has_no_validation_split(bench_env: dict[str, Any], tmp_path: Path) -> None:
    res = _evaluate(bench_env, tmp_path, "--benchmark", "paper-cifar10", "--validation", "--methods", "vim")
    one_line_error(res, 2, "paper-cifar10 protocol has no validation split", "hood evaluate --validation")


def test_a_set_not_downloaded_is_one_line_naming_the_benchmark_download(bench_env: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "partial"
    shutil.copytree(bench_env["root"], root)
    shutil.rmtree(root / "openood" / "images_classic" / "mnist")
    res = _evaluate(bench_env, tmp_path, "--benchmark", "openood-cifar10", "--methods", "vim", root=root)
    one_line_error(res, 2, "benchmark openood-cifar10 needs 'openood-pack-mnist'", "run `hood download openood-cifar10`")
    assert not (tmp_path / "run" / "results.json").exists() or "openood" not in (tmp_path / "run" / "results.json").read_text()


def test_a_list_naming_a_missing_image_is_one_line_naming_the_pack(bench_env: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "broken"
    shutil.copytree(bench_env["root"], root)
    listed = root / "openood" / "benchmark_imglist" / "cifar10" / "test_tin.txt"
    listed.write_text(listed.read_text() + "tin/test/n0144/9999.JPEG -1\n")
    assert len(read_list(listed)) == 8
    res = _evaluate(bench_env, tmp_path, "--benchmark", "openood-cifar10", "--methods", "vim", root=root)
    one_line_error(res, 2, "test_tin.txt names 1 of its 8 images", "tin/test/n0144/9999.JPEG", "hood download openood-pack-tin --force")


def test_benchmark_and_its_own_sets_do_not_mix(bench_env: dict[str, Any], tmp_path: Path) -> None:
    res = _evaluate(bench_env, tmp_path, "--benchmark", "openood-cifar10", "--ood", "svhn", "--methods", "vim")
    one_line_error(res, 2, "fixes the OOD sets", "drop --ood")
    res = _evaluate(bench_env, tmp_path, "--benchmark", "openood-cifar10", "--ood-count", "5", "--methods", "vim")
    one_line_error(res, 2, "data.ood_count", "evaluate.benchmark")
    res = _evaluate(bench_env, tmp_path, "--benchmark", "openood-cifar100", "--methods", "vim")
    one_line_error(res, 2, "openood-cifar100 has ID set cifar100", "-d cifar100")
    res = _evaluate(bench_env, tmp_path, "--benchmark", "nope", "--methods", "vim")
    one_line_error(res, 2, "unknown benchmark 'nope'")
