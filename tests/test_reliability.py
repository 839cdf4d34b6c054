"""A run has one writer at a time, thresholds are tied to the settings they were set under, damaged run files
are named with the command that rewrites them, and ``hood score`` keeps memory bounded on hostile inputs.

Each test names the case of docs/reliability.md it covers."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import invoke, one_line_error, score, tiny_config, write_flat_folder
from PIL import Image

from hood.errors import HoodError

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def writer_elsewhere(folder: Path, command: str) -> Iterator[int]:
    """Another process holding ``folder`` as its writer (what a running `hood <command>` holds); its pid."""
    code = ("import sys, time\nfrom hood.runs import lock_run\nlock_run(sys.argv[1], sys.argv[2])\n"
            "print('held', flush=True)\ntime.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), command], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


# ---- one writer per run ---------------------------------------------------------------------------------


def test_case_1_2_4_a_second_train_decoder_is_refused_naming_the_first_and_a_killed_ones_lock_dies(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    """1: a second --out R; 2: a second --resume R; 4: not called "interrupted" while the first trains. After a
    SIGKILL the lock is gone with the process: --resume continues at once."""
    common = ["--dataset", str(id_folder), "--classifier", str(tiny_classifier), "--aux", str(ood_folder),
              "--num-ood", "8", "--batch-size", "8", "--set", "model.arch=wrn10_2", "--device", "cpu", "-q",
              "--set", "run.num_threads=1"]
    run = tmp_path / "R"
    first = subprocess.Popen([sys.executable, "-m", "hood", "train-decoder", *common, "--epochs", "100000", "--out", str(run)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 180
        while not (run / "train_state.pt").is_file():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.stderr else ""
            time.sleep(0.2)
        before = {f: (run / f).read_bytes() for f in ("config.yaml", "ood_samples.json")}
        second = invoke("train-decoder", *common, "--epochs", "1", "--seed", "7", "--out", str(run))
        err = one_line_error(second, 2, f"{run} is in use by `hood train-decoder` (pid {first.pid})")
        assert "interrupted" not in err  # case 4: it is training, not interrupted
        resumed = invoke("train-decoder", "--resume", str(run), "--set", "decoder.epochs=8", "-q")
        one_line_error(resumed, 2, f"in use by `hood train-decoder` (pid {first.pid})")
        assert before == {f: (run / f).read_bytes() for f in before}  # case 1: nothing of the second mixed in
    finally:
        first.kill()
        first.wait()
    done = int(torch.load(run / "train_state.pt", weights_only=True)["epoch"])
    again = invoke("train-decoder", "--resume", str(run), "--set", f"decoder.epochs={done}", "--json", "-q")
    assert again.exit_code == 0, again.output  # the killed writer's lock died with it
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert not (run / ".hood.lock").exists()


def test_case_3_a_second_evaluate_is_refused_and_readers_still_read(run_copy: Path, mine: Path) -> None:
    """3: two evaluates of one run would mix their scores/; the second is refused before it writes anything,
    while `hood score` (a reader) works beside the writer."""
    def files() -> dict[Path, bytes]:  # the holder's .hood.lock note aside
        return {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file() and p.name != ".hood.lock"}

    before = files()
    with writer_elsewhere(run_copy, "evaluate") as pid:
        r = invoke("evaluate", "--run", str(run_copy), "--methods", "msp", "--device", "cpu", "-q")
        one_line_error(r, 2, f"{run_copy} is in use by `hood evaluate` (pid {pid})")
        read = score(run_copy, str(mine), "--json")
        assert read.exit_code == 0, read.output
    assert files() == before


# ---- thresholds tied to their settings ------------------------------------------------------------------


def test_case_5_a_killed_evaluate_is_marked_and_score_refuses_its_threshold(
    pipeline: dict[str, Any], run_copy: Path, mine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5: evaluate with knn_k=1 killed right after its fit replaced the k=5 one: score with k=1 must not use
    the k=5 threshold. The threshold records the fit parameters too."""
    from hood.jobs import evaluate as ev

    assert pipeline["results"]["threshold_settings"]["knn"] == {"k": 5}
    real = ev.extract_features

    def killed_after_fitting(*args: Any, **kwargs: Any) -> Any:
        if "ID test features" in args or kwargs.get("description") == "ID test features":
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "extract_features", killed_after_fitting)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(tiny_config(pipeline["root"], **{"evaluate.methods": ["knn"], "evaluate.params.knn.k": 1}), str(run_copy))
    r = score(run_copy, str(mine), "--method", "knn", "--set", "evaluate.params.knn.k=1")
    one_line_error(r, 2, "results.json", "still running or was stopped", f"hood evaluate --run {run_copy}")
    assert json.loads((run_copy / "results.json").read_text())["state"] == "running"


def test_case_5_a_threshold_set_under_another_k_is_refused(run_copy: Path, pipeline: dict[str, Any], mine: Path) -> None:
    """With a complete evaluation, a fit parameter differing from the threshold's is named with both values."""
    fit = torch.load(run_copy / "fits" / "knn.pt", weights_only=True)
    fit["key"]["settings"] = {"k": 1}  # a fit made with k=1 (what a later evaluate would cache)
    torch.save(fit, run_copy / "fits" / "knn.pt")
    r = score(run_copy, str(mine), "--method", "knn", "--set", "evaluate.params.knn.k=1")
    one_line_error(r, 2, "was set with k 5, this scoring uses k 1")


# ---- damaged run files ------------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _nan_scores(path: Path) -> None:
    np.savez_compressed(path, scores=np.full(12, np.nan))


DAMAGES = {
    "truncated results.json": ("results.json", _truncate),
    "results.json holding a list": ("results.json", lambda p: p.write_text("[1, 2]")),
    "truncated scores": ("scores/heatmap/id.npz", _truncate),
    "NaN scores": ("scores/heatmap/id.npz", _nan_scores),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_case_6_visualize_names_a_damaged_file_and_the_command_that_rewrites_it(
    pipeline: dict[str, Any], run_copy: Path, tmp_path: Path, damage: str
) -> None:
    from hood.jobs.visualize import visualize

    name, spoil = DAMAGES[damage]
    spoil(run_copy / name)
    with pytest.raises(HoodError) as err:
        visualize(tiny_config(pipeline["root"], **{"data.ood": [str(pipeline["root"] / "ood")]}), str(run_copy), n=2,
                  out_dir=str(tmp_path / "figs"))
    msg = str(err.value)
    assert name in msg and "damaged" in msg and f"hood evaluate --run {run_copy}" in msg and "\n" not in msg


@pytest.mark.parametrize(("content", "why"), [("[1, 2]", "not a JSON object"), (None, "the heatmap threshold is 'abc'")])
def test_case_6_score_names_a_damaged_results_json(run_copy: Path, mine: Path, content: str | None, why: str) -> None:
    f = run_copy / "results.json"
    if content is None:
        data = json.loads(f.read_text())
        data["thresholds"]["heatmap"] = "abc"
        content = json.dumps(data)
    f.write_text(content)
    one_line_error(score(run_copy, str(mine)), 2, f"{f} is damaged ({why}", "hood evaluate --run")


def test_case_7_score_says_results_json_is_damaged_instead_of_printing_question_marks(run_copy: Path, mine: Path) -> None:
    _truncate(run_copy / "results.json")
    one_line_error(score(run_copy, str(mine)), 2, "results.json is damaged", f"hood evaluate --run {run_copy}")


# ---- hostile inputs to hood score -------------------------------------------------------------------------


def _iter(paths: list[str]) -> dict[str, str | None]:
    """``iter_inputs`` with a deadline: a FIFO must not make it wait for a writer."""
    from hood.jobs.score import iter_inputs

    def too_slow(signum: int, frame: Any) -> None:
        raise TimeoutError("reading the inputs hung")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(20)
    try:
        return {name: err for name, _, err in iter_inputs(paths, 32)}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_case_9_a_fifo_is_skipped_not_waited_on(mine: Path) -> None:
    os.mkfifo(mine / "pipe.png")
    got = _iter([str(mine)])
    assert got[f"{mine}/pipe.png"] == "not a regular file: a FIFO, device, socket or folder"
    assert got[f"{mine}/img000.png"] is None and got[f"{mine}/img001.png"] is None


def test_case_17_subfolders_are_kept_in_names_and_a_link_loop_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "dir with spaces"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "sub" / "bild 1.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    got = _iter([str(folder), str(tmp_path / "loop.png"), str(tmp_path / "gone.png"), str(tmp_path / "absent.png")])
    assert got == {f"{folder}/sub/bild 1.png": None, str(tmp_path / "loop.png"): "a symbolic link loop",
                   str(tmp_path / "gone.png"): "a broken symbolic link (its target does not exist)",
                   str(tmp_path / "absent.png"): "no such file or folder"}


MEMORY_CAP = int(1.5 * 2**30)  # `ulimit -d`: torch and a tiny run's scoring need 0.75-1 GiB of it


def test_case_8_10_hostile_files_and_archives_are_scored_in_bounded_memory(pipeline: dict[str, Any], tmp_path: Path) -> None:
    """8: a link to /dev/zero and a 6 GB sparse file beside a good image; 10: a zip of six 128 MB zero-filled
    members (768 MB unpacked) with a good image. Under a data-size cap (``ulimit -d``) that leaves well under
    768 MB beside what scoring needs, the whole lot is scored or skipped with its reason: one member is in memory
    at a time."""
    folder = write_flat_folder(tmp_path / "folder", count=1)
    (folder / "zero.png").symlink_to("/dev/zero")
    with open(folder / "huge.png", "wb") as fh:
        fh.truncate(6 * 10**9)
    archive = tmp_path / "bomb.zip"
    good = (folder / "img000.png").read_bytes()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("good.png", good)
        for i in range(6):
            with zf.open(f"zeros{i}.png", "w", force_zip64=True) as member:
                for _ in range(8):
                    member.write(bytes(16 * 2**20))
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_DATA, (int(sys.argv[1]),) * 2)\n"
            "from hood.cli.app import app\napp(sys.argv[2:])\n")
    env = {**os.environ, "HOOD_CACHE": str(pipeline["root"] / "_cache"), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(MEMORY_CAP), "score", str(folder), str(archive), "--run", str(pipeline["run"]),
         "--device", "cpu", "-q", "--json", "--set", "run.num_threads=1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    images = {i["file"]: i for i in json.loads(out)["images"]}
    assert images[f"{folder}/img000.png"]["score"] is not None and images[f"{archive}/good.png"]["score"] is not None
    assert images[f"{folder}/zero.png"]["error"] == "not a regular file: a FIFO, device, socket or folder"
    assert "5,722 MiB, above the 256 MiB limit" in images[f"{folder}/huge.png"]["error"]
    zeros = [i for name, i in images.items() if "/zeros" in name]
    assert len(zeros) == 6 and all(i["verdict"] == "unreadable" and i["error"] for i in zeros)


def test_an_archive_past_its_total_bound_lists_the_rest_as_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hood.jobs import score as sc

    good = (write_flat_folder(tmp_path / "f", count=1) / "img000.png").read_bytes()
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"{i}.png", good)
    monkeypatch.setattr(sc, "MAX_ARCHIVE_BYTES", 2 * len(good))
    got = _iter([str(archive)])
    assert got[f"{archive}/0.png"] is None and got[f"{archive}/1.png"] is None
    assert got[f"{archive}/2.png"].startswith("past the") and got[f"{archive}/2.png"].endswith("the archive may unpack to")


# ---- smaller ones ------------------------------------------------------------------------------------------


def test_case_11_out_naming_a_pretrain_run_is_refused_before_anything_is_written(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    from hood import locks
    from hood.config import Config
    from hood.runs import create_run

    cfg = Config()
    cfg.run.out = str(tmp_path / "P")
    create_run(cfg, "pretrain").mark_stopped("interrupted")  # resumable with `hood pretrain --resume P`
    locks.release_all()  # as if made by an earlier process
    before = {p.name: p.read_bytes() for p in (tmp_path / "P").iterdir()}
    r = invoke("train-decoder", "--dataset", str(id_folder), "--classifier", str(tiny_classifier), "--aux", str(ood_folder),
               "--set", "model.arch=wrn10_2", "--device", "cpu", "-q", "--out", str(tmp_path / "P"))
    one_line_error(r, 2, "holds a pretrain run, not a train-decoder run")
    assert {p.name: p.read_bytes() for p in (tmp_path / "P").iterdir()} == before


def test_case_12_a_killed_writes_temp_files_are_removed_when_the_run_is_next_opened(tmp_path: Path) -> None:
    from hood.jobs.resume import open_resume
    from hood.runs import RUN_FORMAT

    run = tmp_path / "R"
    (run / "scores" / "knn").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "command": "train-decoder", "status": "running"}))
    stale = [run / ".train_state.pt.k2j3.tmp", run / "scores" / "knn" / ".id.npz.x9.tmp"]
    for f in stale:
        f.write_bytes(b"\0" * 1000)
    open_resume(run, "train-decoder")
    assert not any(f.exists() for f in stale) and (run / "run.json").is_file()


def test_case_13_bad_urls_redirect_loops_and_local_folders_are_one_line_without_retries(tmp_path: Path) -> None:
    import http.server
    import threading

    class Loop(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(302)
            self.send_header("Location", self.path)
            self.end_headers()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for url, words in [("notaurl", "'notaurl' is not a URL hood can fetch"),
                           (f"http://127.0.0.1:{srv.server_address[1]}/x.tar", "a redirect that cannot be followed"),
                           (tmp_path.as_uri(), "cannot read file://")]:
            start = time.monotonic()
            r = invoke("download", "svhn", "--url", url, "--root", str(tmp_path / "data"), "-q")
            err = one_line_error(r, 2, words)
            assert "rerun to resume" not in err and time.monotonic() - start < 5, err
    finally:
        srv.shutdown()
        srv.server_close()


def test_case_14_two_urls_for_one_set_are_refused(tmp_path: Path) -> None:
    r = invoke("download", "svhn", "--url", "svhn=http://a.example/x", "--url", "svhn=http://b.example/x", "--root", str(tmp_path))
    one_line_error(r, 2, "--url names svhn twice")


def test_case_15_a_non_finite_threshold_is_refused(run_copy: Path, mine: Path) -> None:
    for value in ("nan", "inf"):
        one_line_error(score(run_copy, str(mine), "--threshold", value), 2, "--threshold must be a finite number")


def test_case_16_heatmap_write_errors_name_the_flag_and_a_full_disk_exits_1(
    run_copy: Path, mine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hood.fileio

    real = hood.fileio.tempfile.mkstemp

    def fail_with(code: int) -> Any:
        def mkstemp(*args: Any, **kwargs: Any) -> Any:
            if str(kwargs.get("dir", "")).startswith(str(tmp_path / "hm")):
                raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)
        return mkstemp

    monkeypatch.setattr(hood.fileio.tempfile, "mkstemp", fail_with(errno.EACCES))
    one_line_error(score(run_copy, str(mine), "--heatmaps", str(tmp_path / "hm")), 2, "choose a writable --heatmaps folder")
    monkeypatch.setattr(hood.fileio.tempfile, "mkstemp", fail_with(errno.ENOSPC))
    one_line_error(score(run_copy, str(mine), "--heatmaps", str(tmp_path / "hm")), 1, "no space left", "--heatmaps folder")


def test_case_16_a_failed_command_leaves_its_run_failed_not_running(pipeline: dict[str, Any], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An evaluate run that stops on an error is marked so; a run it was refused on is left as it was."""
    from hood.jobs import evaluate as ev

    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))

    def full(*args: Any, **kwargs: Any) -> None:
        raise HoodError("no space left on the device while writing x")

    monkeypatch.setattr(ev, "save_scores", full)
    cfg = tiny_config(pipeline["root"], **{"evaluate.methods": ["msp"], "run.out": str(tmp_path / "E")})
    with pytest.raises(HoodError):
        ev.evaluate(cfg)
    info = json.loads((tmp_path / "E" / "run.json").read_text())
    assert info["status"] == "failed" and info["error"].startswith("no space left")
