"""Configuration: dataclasses with the paper's defaults, YAML loading, overrides, validation.

Precedence, lowest first: dataclass defaults < YAML file (after the config it names as ``base:``) < named CLI
options < ``--set section.key=value``.
The resolved config is validated before any work starts; each problem is one line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hood.errors import ConfigError
from hood.models.names import ARCHITECTURE_NAMES as ARCHITECTURES

BASE_KEY = "base"  # a config's ``base: other.yaml``: start from that config, then apply this file's keys
OOD_DRAWS = ("random", "first")  # data.ood_draw; the first is the default
VAL_ID_SOURCES = ("test", "classifier")  # data.val_id_source


@dataclass
class DataConfig:
    """Which sets: the ID set, the auxiliary outliers for decoder training, the OOD test sets."""

    id: str = "cifar10"
    aux: str = "tinyimages300k"
    ood: list[str] = field(default_factory=lambda: ["svhn", "lsun-c", "lsun-r", "isun", "textures", "places365"])
    root: str | None = None  # data root; None = $HOOD_DATA or the default
    image_size: int = 32
    ood_count: int | None = None  # images per OOD test set; None = len(ID test) / 5 (the protocol)
    id_test_count: int | None = None  # None = the full ID test split
    # which rows of a set larger than its count (ood_count, id_test_count): "random", drawn with ood_draw_seed
    # (its own seed, so every method and every run.seed scores the same images, and a class-sorted folder is
    # not cut to its first classes), or "first", the file order (the official protocol's reading)
    ood_draw: str = "random"
    ood_draw_seed: int = 0
    strict: bool = False  # unreadable images are fatal instead of skipped
    # the validation split (`evaluate --validation`, hood/jobs/validation.py). Its ID images: "test", a seeded
    # half of the ID test split (drawn with ood_draw_seed; the test table scores the other half), for any
    # classifier; or "classifier", the training images `hood pretrain` held out of the classifier's training
    # (the whole test split stays for the table). Both are images the classifier never saw: its own training
    # images would look more typical to it than any test image, and flatter every score that reads it.
    # None: no validation split (the test table scores the whole ID test split)
    val_id_source: str | None = None
    val_aux_classes: int = 0  # the last K class folders of the auxiliary set
    # more validation OOD sets (names, folders, archives), e.g. far-OOD ones; never an OOD test set
    val_ood: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    # resnet18 | wrn40_2 | resnet50 (hood's own), torchvision:NAME (any torchvision classifier) or
    # module:FILE.py:FUNCTION (a user's builder, called with the class count); the last two read a state dict
    arch: str = "resnet18"
    classifier: str | None = None  # a classifier checkpoint; None = the latest pretrain run
    num_classes: int | None = None  # classes of a torchvision:/module: classifier; None = read off its state dict
    # the input normalization a torchvision:/module: classifier was trained with, per RGB channel; None = ImageNet's
    input_mean: list[float] | None = None
    input_std: list[float] | None = None


@dataclass
class PretrainConfig:
    """The paper's classifier recipe: SGD 0.1, momentum 0.9, wd 5e-4, batch 200, 100 epochs, plateau."""

    epochs: int = 100
    batch_size: int = 200
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "plateau"  # plateau (the paper) | onecycle (faster to the same accuracy) | none
    plateau_patience: int = 5
    plateau_factor: float = 0.1
    val_fraction: float = 0.01
    augment: bool = True


@dataclass
class DecoderConfig:
    """The paper's decoder recipe: Adam 2e-4, betas (0.5, 0.999), batch 200, 150 epochs."""

    epochs: int = 150
    batch_size: int = 200
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    num_ood: int = 10000
    num_id: int | None = None  # ID training images used; None = all of the training split
    fw_layers: int = 1
    loss_weight: float = 5.0  # w = 1 + loss_weight * |t|
    # the outlier's target: 1 = its nearest same-predicted-class ID image (the paper); k > 1 = the pixel mean
    # of its k nearest, a smoother target that depends less on one neighbour
    prototype_k: int = 1
    # the heatmap's noise floor: this quantile of the per-pixel magnitudes the trained decoder draws on unseen
    # ID images, taken off every pixel (engine/noise_floor.py); 0 = none, the paper's heatmap
    noise_floor_quantile: float = 0.0
    # composite outliers beside the pool's: ID training images with a region (10-50%) pasted from an outlier,
    # whose target is the ID image itself, so the decoder learns to draw the change inside the region only;
    # 0 = none, the paper's
    composites: int = 0


@dataclass
class EvaluateConfig:
    methods: list[str] = field(default_factory=lambda: ["heatmap", "msp", "energy", "knn"])
    fpr_convention: str = "id"  # id: FPR of OOD at 95% TPR of ID (the paper) | ood: OpenOOD's
    batch_size: int = 500
    # ID training images the fitted detectors (KNN, ViM, Mahalanobis, ...) and the combinations fit on: a seeded
    # draw of the training split where it holds more. Their fit pass over the training set is most of a first
    # evaluate's time on a CPU; the default is all of CIFAR's 50,000, on which docs/quality.md was measured
    fit_count: int | None = 50_000
    # each detector's parameters, by method and by the name its constructor gives them (its paper's), e.g.
    # {knn: {k: 50}, scale: {percentile: 90}, heatmap+vim+scale: {vim_weight: 3, scale_weight: 0.25}}; what is
    # not set keeps the constructor's default (docs/configuration.md lists them)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    validation: bool = False  # score the decoder run's validation split instead of the ID test and OOD test sets
    benchmark: str | None = None  # a named protocol (hood/data/benchmarks.py) in place of data.ood: its sets, rows and groups


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"
    out: str | None = None  # run directory; None = runs/<config>-<timestamp>
    runs_dir: str = "runs"
    deterministic: bool = False
    num_threads: int | None = None  # CPU threads; None = PyTorch's default
    compile: bool = False  # torch.compile the training forward passes (pays off on long GPU runs)
    # at most one train_state.pt write per this many seconds (first and last epoch always; Ctrl-C/SIGTERM
    # still save the newest epoch); 0 = after every epoch
    checkpoint_interval_s: float = 20.0


@dataclass
class Config:
    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "name"}
_SECTION_CLASSES = {
    "data": DataConfig, "model": ModelConfig, "pretrain": PretrainConfig,
    "decoder": DecoderConfig, "evaluate": EvaluateConfig, "run": RunConfig,
}


def _closest(word: str, options: list[str]) -> str:
    m = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean '{m[0]}'?)" if m else ""


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; strings from the command line are parsed."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            return None
        return _coerce(key, value, args[0])
    if value is None:
        raise ConfigError(f"config key '{key}' needs a value (it cannot be empty or null)")
    if origin is dict:
        return _coerce_params(key, value)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):
            if value.startswith("["):
                try:
                    value = yaml.safe_load(value)
                except (yaml.YAMLError, ValueError):
                    raise ConfigError(f"config key '{key}' must be a list, got {_short(value)}") from None
            else:
                value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_coerce(key, v, inner) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a string, got {_short(value)}")
        return str(value)
    return value


_PARAM_TYPES = (str, int, float, bool)


def _coerce_params(key: str, value: Any) -> dict[str, dict[str, Any]]:
    """``evaluate.params``: a mapping of method names to mappings of parameter names to values (numbers,
    strings, booleans, null, or lists of them). Which methods and names exist is the detectors' to say: the
    command that builds them checks each against its constructor."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"config key '{key}' must be a mapping such as {{knn: {{k: 50}}}}, got {_short(value)}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"config key '{key}' must be a mapping of methods to their parameters, e.g. {{knn: {{k: 50}}}}, got {_short(value)}")
    out: dict[str, dict[str, Any]] = {}
    for method, kwargs in value.items():
        if not isinstance(method, str) or not method:
            raise ConfigError(f"config key '{key}' holds {_short(method)}, not a method name")
        if not isinstance(kwargs, dict):
            raise ConfigError(f"config key '{key}.{method}' must be a mapping of parameter names to values, got {_short(kwargs)}")
        for name, v in kwargs.items():
            items = v if isinstance(v, list) else [v]
            if not isinstance(name, str) or not all(x is None or isinstance(x, _PARAM_TYPES) for x in items):
                raise ConfigError(f"config key '{key}.{method}' holds {_short(name)}: {_short(v)}; a parameter is a name and a number, "
                                  f"string, boolean, null or a list of them")
        out[method] = dict(kwargs)
    return out


def _short(value: Any) -> str:
    """A value for an error line: its repr, cut so one line stays one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def apply_mapping(cfg: Config, mapping: dict[str, Any], source: str) -> None:
    """Merge a nested ``{section: {key: value}}`` mapping into ``cfg``, rejecting unknown keys."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(mapping).__name__}")
    for section, values in mapping.items():
        if section == "name":
            if not isinstance(values, (str, int, float)) or isinstance(values, bool):
                raise ConfigError(f"{source}: 'name' must be a string, got {_short(values)}")
            cfg.name = str(values)
            continue
        if section not in _SECTION_CLASSES:
            raise ConfigError(f"{source}: unknown section '{_short(section)[1:-1] if isinstance(section, str) else _short(section)}'{_closest(str(section), [*_SECTION_CLASSES, BASE_KEY])}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping")
        for key, value in values.items():
            if not isinstance(key, str):
                raise ConfigError(f"{source}: key {_short(key)} in section '{section}' is not a name")
            set_value(cfg, f"{section}.{key}", value, source)


def set_value(cfg: Config, dotted: str, value: Any, source: str = "--set") -> None:
    """Set ``section.key``; a mapping key (``evaluate.params``) is merged into, one method and one parameter at a
    time, and may be reached deeper: ``evaluate.params.knn.k=5``, ``evaluate.params.knn={k: 5}``."""
    parts = dotted.split(".")
    if len(parts) < 2:
        raise ConfigError(f"{source}: '{dotted}' is not of the form section.key")
    section, key, deeper = parts[0], parts[1], parts[2:]
    if section not in _SECTION_CLASSES:
        raise ConfigError(f"{source}: unknown section '{section}'{_closest(section, list(_SECTION_CLASSES))}")
    types_ = _field_types(_SECTION_CLASSES[section])
    if key not in types_:
        raise ConfigError(f"{source}: unknown key '{section}.{key}'{_closest(key, list(types_))}")
    tp = types_[key]
    mapping = typing.get_origin(tp) is dict
    if deeper and (not mapping or len(deeper) > 2 or not all(deeper)):
        raise ConfigError(f"{source}: '{dotted}' is not of the form section.key" + (" or section.key.method.parameter" if mapping else ""))
    if not mapping:
        setattr(getattr(cfg, section), key, _coerce(dotted, value, tp))
        return
    if len(deeper) == 2:
        value = {deeper[0]: {deeper[1]: value}}
    elif len(deeper) == 1:
        value = {deeper[0]: value}
    merged = getattr(getattr(cfg, section), key)
    for method, kwargs in _coerce(f"{section}.{key}", value, tp).items():
        merged.setdefault(method, {}).update(kwargs)


def parse_set_option(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set '{item}' must look like section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a .yaml file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or (str(err).splitlines() or ["unreadable"])[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except (UnicodeDecodeError, ValueError):  # ValueError: a NUL byte, or a date such as 2020-13-45
        raise ConfigError(f"config file {path} is not a readable YAML text file (binary content or an impossible date)") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a hood config") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from None
    return {} if data is None else data


def config_chain(path: str | Path) -> list[tuple[Path, Any]]:
    """The file and the configs it builds on through ``base:``, furthest base first, each with its mapping
    (``base`` removed). A derived config holds only what differs from its base, so a change to the base
    (the paper's settings) reaches every profile built on it instead of drifting in a copy."""
    chain: list[tuple[Path, Any]] = []
    seen: set[Path] = set()
    current = Path(path)
    while True:
        seen.add(current.resolve())
        mapping = load_yaml(current)
        base = mapping.pop(BASE_KEY, None) if isinstance(mapping, dict) else None
        chain.append((current, mapping))
        if base is None:
            return chain[::-1]
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{current}: '{BASE_KEY}' must name another config file, e.g. {BASE_KEY}: cifar10_wrn40_2.yaml, got {_short(base)}")
        parent = current.parent / base.strip()
        if not parent.suffix:
            parent = parent.with_suffix(".yaml")
        if not parent.is_file():
            raise ConfigError(f"{current}: its base config {parent} does not exist ('{BASE_KEY}' is relative to the file's folder)")
        if parent.resolve() in seen:
            raise ConfigError(f"{current}: '{BASE_KEY}: {base}' loops back to a config already in the chain; remove one '{BASE_KEY}' line")
        current = parent


def unknown_dataset(spec: str) -> str | None:
    """Why ``spec`` names no data set (a message with the closest known name), or None if it may.

    Paths are not checked here (they may be created later, and the loaders say what is wrong with
    them); a bare word must be a registry or built-in name, so a typo fails before any work starts.
    """
    from hood.data import registry
    from hood.data.builtin import BUILTIN_NAMES
    from hood.fileio import exists

    if "/" in spec or "\\" in spec or spec.startswith((".", "~")) or Path(spec).suffix or exists(spec):
        return None
    if spec in BUILTIN_NAMES or registry.canonical(spec) is not None:  # a name or an alias (lsun = lsun-c)
        return None
    return f"names no known data set: '{_short(spec)[1:-1]}'{registry.suggest(spec, BUILTIN_NAMES)}; see `hood download --list`, or give a folder or archive path"


def validate_decoder(d: DecoderConfig) -> None:
    """The decoder recipe's checks, shared with the Python API's ``HeatmapDetector.fit``."""

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}' {msg}")

    need(d.epochs >= 1, "decoder.epochs", f"must be at least 1, got {d.epochs}")
    need(d.batch_size >= 2, "decoder.batch_size", f"must be at least 2 (BatchNorm), got {d.batch_size}")
    need(d.lr > 0, "decoder.lr", f"must be positive, got {d.lr}")
    need(len(d.betas) == 2 and all(0 <= b < 1 for b in d.betas), "decoder.betas", f"must be two numbers in [0, 1), got {d.betas}")
    need(d.num_ood >= 1, "decoder.num_ood", f"must be at least 1, got {d.num_ood}")
    need(d.num_id is None or d.num_id >= 2, "decoder.num_id", f"must be at least 2 (BatchNorm), got {d.num_id}")
    need(1 <= d.fw_layers <= 4, "decoder.fw_layers", f"must be 1, 2, 3 or 4, got {d.fw_layers}")
    need(d.loss_weight >= 0, "decoder.loss_weight", f"must be non-negative, got {d.loss_weight}")
    need(0 <= d.noise_floor_quantile < 1, "decoder.noise_floor_quantile",
         f"must be in [0, 1) (0 = no floor, the paper; 0.99 = the 99th percentile), got {d.noise_floor_quantile}")
    need(0 <= d.composites <= 10**6, "decoder.composites", f"must be 0 (none, the paper) to 1,000,000, got {d.composites}")
    need(1 <= d.prototype_k <= 100, "decoder.prototype_k", f"must be 1 (the nearest, the paper) to 100, got {d.prototype_k}")


_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def validate(cfg: Config) -> Config:
    """Reject impossible values, one line each, before any work starts."""

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}' {msg}")

    external = cfg.model.arch.startswith(("torchvision:", "module:"))
    need(cfg.model.arch in ARCHITECTURES or external, "model.arch",
         f"must be one of {', '.join(ARCHITECTURES)}, torchvision:NAME or module:FILE.py:FUNCTION, got '{cfg.model.arch}'{_closest(cfg.model.arch, list(ARCHITECTURES))}")
    need(cfg.model.num_classes is None or cfg.model.num_classes >= 2, "model.num_classes", f"must be at least 2, got {cfg.model.num_classes}")
    for key, values in (("model.input_mean", cfg.model.input_mean), ("model.input_std", cfg.model.input_std)):
        need(values is None or (len(values) == 3 and (key.endswith("mean") or min(values) > 0)), key,
             f"must be three numbers, one per RGB channel{' (positive)' if key.endswith('std') else ''}, got {values}")
    need(8 <= cfg.data.image_size <= 1024, "data.image_size", f"must be between 8 and 1024, got {cfg.data.image_size}")
    need(cfg.data.ood_count is None or cfg.data.ood_count >= 1, "data.ood_count", "must be at least 1")
    need(cfg.data.id_test_count is None or cfg.data.id_test_count >= 1, "data.id_test_count", "must be at least 1")
    need(cfg.data.val_aux_classes >= 0, "data.val_aux_classes", f"must be 0 or more, got {cfg.data.val_aux_classes}")
    need(cfg.data.val_id_source in (None, *VAL_ID_SOURCES), "data.val_id_source",
         f"must be test (half of the ID test split) or classifier (the images hood pretrain held out), got '{cfg.data.val_id_source}'")
    need(cfg.data.ood_draw in OOD_DRAWS, "data.ood_draw", f"must be random (a seeded draw) or first (the file order), got '{cfg.data.ood_draw}'")
    need(0 <= cfg.data.ood_draw_seed < 2**32, "data.ood_draw_seed", f"must be in [0, 2**32), got {cfg.data.ood_draw_seed}")
    _validate_val_ood(cfg, need)
    p, d, e, r = cfg.pretrain, cfg.decoder, cfg.evaluate, cfg.run
    need(p.epochs >= 1, "pretrain.epochs", f"must be at least 1, got {p.epochs}")
    need(p.batch_size >= 1, "pretrain.batch_size", f"must be at least 1, got {p.batch_size}")
    need(p.lr > 0, "pretrain.lr", f"must be positive, got {p.lr}")
    need(0 <= p.momentum < 1, "pretrain.momentum", f"must be in [0, 1), got {p.momentum}")
    need(p.weight_decay >= 0, "pretrain.weight_decay", f"must be non-negative, got {p.weight_decay}")
    need(p.scheduler in ("plateau", "onecycle", "none"), "pretrain.scheduler", f"must be plateau, onecycle or none, got '{p.scheduler}'")
    need(0 <= p.val_fraction < 0.5, "pretrain.val_fraction", f"must be in [0, 0.5), got {p.val_fraction}")
    validate_decoder(d)
    need(e.fpr_convention in ("id", "ood"), "evaluate.fpr_convention", f"must be id or ood, got '{e.fpr_convention}'")
    need(e.batch_size >= 1, "evaluate.batch_size", "must be at least 1")
    need(e.fit_count is None or e.fit_count >= 1, "evaluate.fit_count", f"must be at least 1 (or null: all), got {e.fit_count}")
    _validate_benchmark(cfg, need)
    need(bool(e.methods), "evaluate.methods", "must name at least one method")
    need(bool(_DEVICE_RE.match(r.device)), "run.device", f"must be auto, cpu, cuda or cuda:N, got '{r.device}'")
    need(0 <= r.seed < 2**32, "run.seed", f"must be in [0, 2**32), got {r.seed}")
    for key, spec in [("data.id", cfg.data.id), ("data.aux", cfg.data.aux)] + [("data.ood", o) for o in cfg.data.ood]:
        need(bool(spec.strip()), key, "must name a data set, got an empty name")
        problem = unknown_dataset(spec)
        need(problem is None, key, problem or "")
    need(r.num_threads is None or r.num_threads >= 1, "run.num_threads", "must be at least 1")
    need(r.checkpoint_interval_s >= 0, "run.checkpoint_interval_s", f"must be non-negative, got {r.checkpoint_interval_s}")
    return cfg


def _validate_benchmark(cfg: Config, need: typing.Callable[[bool, str, str], None]) -> None:
    """``evaluate.benchmark``: a known name; it fixes the counts, so data.ood_count and data.id_test_count stay unset."""
    if cfg.evaluate.benchmark is None:
        return
    from hood.data import benchmarks

    known = ", ".join(benchmarks.names())
    need(benchmarks.find(cfg.evaluate.benchmark) is not None, "evaluate.benchmark", f"unknown benchmark '{cfg.evaluate.benchmark}'; known: {known}")
    for key in ("ood_count", "id_test_count"):
        need(getattr(cfg.data, key) is None, f"data.{key}", "must stay unset with evaluate.benchmark, which fixes how many images are scored")


def _validate_val_ood(cfg: Config, need: typing.Callable[[bool, str, str], None]) -> None:
    """``data.val_ood``: known sets, none of them an OOD test set (a built-in synthetic name is validated on a
    draw of its own, so it may be both)."""
    from hood.data.builtin import SYNTHETIC_NAMES

    for spec in cfg.data.val_ood:
        need(bool(str(spec).strip()), "data.val_ood", "must name data sets, got an empty name")
        need(unknown_dataset(spec) is None, "data.val_ood", unknown_dataset(spec) or "")
        need(spec in SYNTHETIC_NAMES or spec not in cfg.data.ood, "data.val_ood",
             f"names '{spec}', which is an OOD test set too (data.ood); validate on sets that are not test sets")


def resolve(
    config_path: str | Path | None = None,
    named: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> Config:
    """Defaults < YAML (its ``base:`` chain first) < named CLI options (``{'decoder.num_ood': 5000}``, None =
    not given) < ``--set``."""
    cfg = Config()
    if config_path is not None:
        chain = config_chain(config_path)
        for depth, (path, mapping) in enumerate(chain, start=1):
            if depth < len(chain) and isinstance(mapping, dict):
                mapping = {k: v for k, v in mapping.items() if k != "name"}  # a base's name is not the run's
            apply_mapping(cfg, mapping, str(path))
        if cfg.name == "default":
            cfg.name = Path(config_path).stem
    for key, value in (named or {}).items():
        if value is not None:
            set_value(cfg, key, value, source=f"--{key.split('.')[-1].replace('_', '-')}")
    for item in sets or []:
        key, value = parse_set_option(item)
        set_value(cfg, key, value)
    return validate(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
