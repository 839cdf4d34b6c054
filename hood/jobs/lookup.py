"""Finding what a job works on: the data root, the classifier file, the train-decoder run to read, and the
data sets a command names (checked before any run directory is made)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hood import locks
from hood.config import Config
from hood.data import registry
from hood.data.images import ImageSet
from hood.errors import CheckpointError, ConfigError, RunError
from hood.models.adapter import is_external_arch
from hood.models.checkpoint import (
    LoadedClassifier,
    infer_arch,
    load_classifier,
    load_decoder,
    load_external_classifier,
    read_classifier_checkpoint,
    read_decoder_checkpoint,
    read_state_dict,
    strip_prefixes,
)
from hood.models.decoder import HeatmapDecoder
from hood.progress import Reporter
from hood.runs import Run, find_latest, open_run


def data_root(cfg: Config) -> Path:
    return registry.resolve_root(cfg.data.root)


def classifier_path(cfg: Config, reporter: Reporter) -> Path:
    """``model.classifier`` if given, else ``classifier.pt`` of the newest complete pretrain run."""
    if cfg.model.classifier:
        return Path(cfg.model.classifier)
    run = _latest(cfg, "pretrain", reporter, "no classifier given and ", "pass --classifier PATH", "classifier from")
    return run.file("classifier.pt")


def _latest(cfg: Config, command: str, reporter: Reporter, lead: str, option: str, using: str) -> Run:
    """The newest complete ``command`` run for this config, logging how many incomplete ones were skipped."""
    run, skipped = find_latest(cfg.run.runs_dir, command, cfg.name)
    if skipped:
        reporter.log(f"skipped {skipped} incomplete {command} run(s) in {cfg.run.runs_dir}")
    if run is None:
        note = f" ({skipped} incomplete one(s) skipped: finish them with `hood {command} --resume RUN`)" if skipped else ""
        raise RunError(f"{lead}no complete {command} run for '{cfg.name}' in {cfg.run.runs_dir}/{note}; "
                       f"{option} or run `hood {command}` first")
    reporter.log(f"using {using} {run.path}")
    return run


def check_classifier(cfg: Config, reporter: Reporter) -> Path:
    """Validate the classifier file (safe load, layout) before any data is touched."""
    if is_external_arch(cfg.model.arch):
        if not cfg.model.classifier:
            raise ConfigError(f"--arch {cfg.model.arch} needs its weights: pass --classifier WEIGHTS.pt (a state dict of that model)")
        path = Path(cfg.model.classifier)
        read_state_dict(path)
        return path
    path = classifier_path(cfg, reporter)
    ckpt = read_classifier_checkpoint(path)
    found = str(ckpt.get("arch") or infer_arch(strip_prefixes(ckpt["net_state_dict"])))
    if found != cfg.model.arch:
        raise CheckpointError(
            f"{path} holds a {found} classifier, but the config asks for {cfg.model.arch}; "
            f"pass --set model.arch={found} or a config for {found}"
        )
    return path


def run_classifier(cfg: Config, run: Run | None, reporter: Reporter) -> Path:
    """The classifier file, checked: the one named (``model.classifier``), else the one ``run`` recorded (its
    decoder was trained on it, so its heatmaps are that classifier's)."""
    if cfg.model.classifier is None and run is not None:
        cfg.model.classifier = run.info.get("classifier")
    return check_classifier(cfg, reporter)


def check_given_files(cfg: Config, reporter: Reporter, decoder: str | Path | None = None) -> None:
    """Check the files the user named (``--classifier``, a decoder) before anything else is looked up.

    Called first by every command taking them, so a wrong or unsafe file is reported at once, naming
    it, whether or not any data or previous run is present.
    """
    if cfg.model.classifier:
        check_classifier(cfg, reporter)
    if decoder is not None:
        read_decoder_checkpoint(decoder)


def open_classifier(path: Path, cfg: Config, num_classes: int | None = None) -> LoadedClassifier:
    """The classifier ``path`` holds; ``num_classes`` (the data set's) must match it."""
    if is_external_arch(cfg.model.arch):
        m = cfg.model
        if m.num_classes is not None and num_classes is not None and m.num_classes != num_classes:
            raise ConfigError(f"--num-classes is {m.num_classes}, but the data set has {num_classes} classes")
        source = "--num-classes" if m.num_classes is not None else f"the ID data set {cfg.data.id}"
        return load_external_classifier(path, m.arch, cfg.data.image_size, m.num_classes or num_classes, m.input_mean,
                                        m.input_std, source)
    return load_classifier(path, arch=cfg.model.arch, num_classes=num_classes)


def decoder_run(path: str | None, cfg: Config, reporter: Reporter) -> Run:
    """The train-decoder run to use: the given path, else the newest complete one for this config."""
    if path:
        run = open_run(path)
        if run.info.get("command") != "train-decoder":
            command = str(run.info.get("command"))
            raise RunError(f"{path} is {'an' if command[:1] in 'aeiou' else 'a'} {command} run, not a train-decoder run "
                           f"(which holds the decoder); name one with --run RUN")
        if run.info.get("status") != "complete":
            raise RunError(incomplete(run, path))
        return run
    return _latest(cfg, "train-decoder", reporter, "", "pass --run PATH", "decoder run")


def open_decoder(run: Run, classifier: LoadedClassifier, size: int) -> tuple[HeatmapDecoder, dict[str, Any]]:
    """The decoder of ``run`` and its record of what it trained on (``meta``). Refused where it draws heatmaps of
    another size than ``data.image_size``: they would be scored against, or laid over, images of another resolution."""
    decoder, ckpt = load_decoder(run.file("decoder.pt"), classifier)
    out = decoder.spec.out_size
    if out != size:
        raise ConfigError(f"the decoder of {run.path} draws {out}x{out} heatmaps, but data.image_size is {size}; "
                          f"use --set data.image_size={out}")
    return decoder, ckpt["meta"]


def incomplete(run: Run, path: str | Path) -> str:
    """Why an unfinished run cannot be read: in use by a live command (named), or stopped (resume it)."""
    who = locks.holder(run.path)
    if who is not None:
        return f"{path} is in use by {who}, which has not finished it; wait for it to finish"
    return f"{path} is incomplete (status {run.info.get('status')}); resume it with `hood {run.info.get('command')} --resume {path}`"


RESERVED_SETS = ("id", "mean")  # the ID scores' file and the table's mean row


def check_set_names(cfg: Config, validating: bool = False, required: bool = True) -> None:
    """The OOD sets an evaluation names: at least one, each under a name of its own that is not a run's own
    (``id``, ``mean``, the ``val-`` prefix of validation files), since a set's name is its scores' file name."""
    from hood.data.sources import dataset_label

    if required and not validating and not cfg.data.ood:
        raise ConfigError("no OOD test set to evaluate; name one or more, comma-separated, with --ood (or data.ood)")
    specs = list(dict.fromkeys([*cfg.data.ood, *(cfg.data.val_ood if validating else [])]))
    seen: dict[str, str] = {}
    for spec in specs:
        name = dataset_label(spec)
        if name in seen:
            raise ConfigError(f"two OOD sets are both named '{name}' ({seen[name]} and {spec}), and a set's scores are "
                              f"saved under its name; rename one of them")
        if name in RESERVED_SETS or name.startswith("val-"):
            raise ConfigError(f"the OOD set {spec} is named '{name}', a name a run keeps for its own files "
                              f"({', '.join(RESERVED_SETS)}, val-*); rename it")
        seen[name] = spec


def skip_note(s: ImageSet) -> str | None:
    if not s.skipped:
        return None
    first = ", ".join(s.skipped[:3])
    return f"{s.name}: skipped {len(s.skipped)} unreadable file(s) ({first}{', ...' if len(s.skipped) > 3 else ''}); --strict makes them fatal"


def preflight(cfg: Config, specs: list[str]) -> None:
    """Check that every named data set can be found before a run directory or any work is started."""
    from hood.data.sources import require_available

    require_available(specs, data_root(cfg))
