"""What a command reading a decoder run takes from it: the data sets and classifier it was trained on, from its
config.yaml, unless the user names them (a named option or ``--set``). A config given with ``-c`` says how to
evaluate, not which data the run learned from: its default ID set would send the run to a data set it never saw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hood.config import Config, parse_set_option, resolve, validate
from hood.errors import ConfigError

# keys that describe the run's training data and classifier (the classifier file itself is the run's record)
FROM_RUN = ("data.id", "data.aux", "data.image_size", "data.val_aux_classes", "model.arch", "model.num_classes",
            "model.input_mean", "model.input_std")


def latest_decoder_run(cfg: Config) -> str | None:
    """The run a command without ``--run`` reads: the newest complete train-decoder run for this config."""
    from hood.runs import find_latest

    found, _ = find_latest(cfg.run.runs_dir, "train-decoder", cfg.name)
    return str(found.path) if found else None


# sections read only while training: a decoder run is read as it was trained
TRAIN_TIME = {"decoder": "train-decoder", "pretrain": "pretrain"}


def refuse_train_time_keys(sets: list[str] | None) -> None:
    """A ``--set`` of a training key would change nothing here (``decoder.noise_floor_quantile`` is the decoder's,
    fixed when it was trained): refused in one line, not silently ignored."""
    for item in sets or []:
        key = parse_set_option(item)[0]
        trainer = TRAIN_TIME.get(key.split(".")[0])
        if trainer is not None:
            raise ConfigError(f"--set {key} is a {trainer} setting, which this command would ignore (it trains nothing, "
                              f"it reads what was trained); drop it, or give it to `hood {trainer}` and train again")


def with_run_data(cfg: Config, run_dir: str | None, named: dict[str, Any], sets: list[str] | None) -> Config:
    """``cfg`` with the :data:`FROM_RUN` keys of the run at ``run_dir`` where the user named none of them; a
    training key in ``sets`` is refused (:func:`refuse_train_time_keys`)."""
    refuse_train_time_keys(sets)
    path = Path(run_dir) / "config.yaml" if run_dir else None
    if path is None or not path.is_file():
        return cfg  # not a run directory: the command that opens it says so
    told = {k for k, v in named.items() if v is not None} | {parse_set_option(s)[0] for s in sets or []}
    theirs = resolve(path)
    for key in FROM_RUN:
        if key not in told:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, getattr(getattr(theirs, section), name))
    return validate(cfg)
