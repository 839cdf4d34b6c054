"""Configuration: precedence (defaults < YAML and its base: chain < named CLI options < --set), validation errors as one-line
ConfigErrors naming the key, and every bundled config loading and validating."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from hood.cli.options import build_config, bundled_configs
from hood.config import SECTIONS, Config, dump_yaml, resolve
from hood.errors import ConfigError


def write_yaml(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg.strip(), f"not one line: {msg!r}"
    return msg


def test_defaults_are_the_papers_recipe() -> None:
    cfg = resolve()
    assert (cfg.decoder.lr, cfg.decoder.betas, cfg.decoder.batch_size, cfg.decoder.epochs) == (2e-4, [0.5, 0.999], 200, 150)
    assert (cfg.pretrain.lr, cfg.pretrain.momentum, cfg.pretrain.weight_decay, cfg.pretrain.epochs) == (0.1, 0.9, 5e-4, 100)
    assert cfg.decoder.loss_weight == 5.0 and cfg.evaluate.fpr_convention == "id" and cfg.run.device == "auto"


def test_precedence_defaults_yaml_named_set(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "decoder:\n  epochs: 7\n  num_ood: 300\n  lr: 1.0e-3\nrun:\n  seed: 3\n")
    cfg = resolve(path)
    assert cfg.name == "exp"  # the file's stem when it names none
    assert (cfg.decoder.epochs, cfg.decoder.num_ood, cfg.decoder.lr, cfg.run.seed) == (7, 300, 1e-3, 3)
    assert cfg.decoder.batch_size == 200  # untouched keys keep the defaults
    # named options beat the YAML, None means "not given"
    cfg = resolve(path, {"decoder.epochs": 9, "decoder.num_ood": None, "run.seed": 5})
    assert (cfg.decoder.epochs, cfg.decoder.num_ood, cfg.run.seed) == (9, 300, 5)
    # --set beats both, and later --set beats earlier ones
    cfg = resolve(path, {"decoder.epochs": 9}, ["decoder.epochs=11", "decoder.lr=5e-5", "run.seed=1", "run.seed=2"])
    assert (cfg.decoder.epochs, cfg.decoder.lr, cfg.run.seed) == (11, 5e-5, 2)


def test_cli_named_options_go_through_the_same_precedence(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "name: mine\ndecoder:\n  fw_layers: 2\n")
    cfg = build_config(str(path), {"decoder.fw_layers": 3, "run.device": "cpu"}, ["decoder.fw_layers=4"])
    assert cfg.name == "mine" and cfg.decoder.fw_layers == 4 and cfg.run.device == "cpu"
    cfg = build_config(str(path), {"decoder.fw_layers": 3}, None)
    assert cfg.decoder.fw_layers == 3


def test_set_parses_values(tmp_path: Path) -> None:
    cfg = resolve(None, {}, [
        "data.ood=svhn, textures", "evaluate.methods=[heatmap]", "model.classifier=null",
        "data.ood_count=~", "pretrain.augment=no", "decoder.betas=[0.9, 0.99]", "data.image_size=64.0",
        "run.out=some/dir",
    ])
    assert cfg.data.ood == ["svhn", "textures"] and cfg.evaluate.methods == ["heatmap"]
    assert cfg.model.classifier is None and cfg.data.ood_count is None and cfg.pretrain.augment is False
    assert cfg.decoder.betas == [0.9, 0.99] and cfg.data.image_size == 64 and isinstance(cfg.data.image_size, int)
    assert cfg.run.out == "some/dir"


PAPER = ["paper/cifar10_resnet18", "paper/cifar10_wrn40_2", "paper/cifar100_resnet18", "paper/cifar100_wrn40_2",
         "paper/tinyimagenet_resnet50"]
RECOMMENDED = ["cifar10_resnet18", "cifar10_wrn40_2"]


def test_bundled_configs_load_and_validate() -> None:
    bundled = bundled_configs()
    assert sorted(bundled) == sorted([*PAPER, *RECOMMENDED, "demo"])
    names = set()
    for name, path in bundled.items():
        cfg = resolve(path)
        assert isinstance(cfg, Config) and cfg.data.id and cfg.data.aux and cfg.data.ood and cfg.model.arch
        names.add(cfg.name)
        text = path.read_text()
        for word in ("issue", "METHOD", "QUALITY", "shared", "session"):
            assert word not in text, (name, word)  # a config speaks of hood alone
    assert len(names) == len(bundled)  # runs of different configs never share a name
    paper = {n: resolve(bundled[n]) for n in PAPER}
    assert paper["paper/tinyimagenet_resnet50"].model.arch == "resnet50" and paper["paper/tinyimagenet_resnet50"].data.image_size == 64
    assert paper["paper/cifar100_wrn40_2"].data.id == "cifar100" and paper["paper/cifar100_wrn40_2"].model.arch == "wrn40_2"
    for cfg in paper.values():
        assert cfg.decoder.lr == 2e-4 and cfg.decoder.betas == [0.5, 0.999] and cfg.decoder.epochs == 150


def test_paper_configs_hold_only_their_differences_from_the_defaults() -> None:
    """The defaults are the paper's recipe: a paper config sets no key to its default value."""
    defaults = Config().to_dict()
    for name in PAPER:
        mapping = yaml.safe_load(bundled_configs()[name].read_text())
        for section, values in mapping.items():
            if isinstance(values, dict):
                for key, value in values.items():
                    assert value != defaults[section][key], f"{name}: {section}.{key} is the default"
    assert resolve(bundled_configs()["paper/cifar10_resnet18"]).to_dict() == {**defaults, "name": "paper_cifar10_resnet18"}


@pytest.mark.parametrize("arch", ["wrn40_2", "resnet18"])
def test_recommended_config_is_its_paper_config_with_the_cpu_budget(arch: str) -> None:
    """A recommended config builds on its paper config (``base:``) and differs from it only in its budget
    and the decoder and detector settings chosen for that budget (the baselines' percentiles included: chosen on
    the same validation split, so that hood is compared against them at their best)."""
    bundled = bundled_configs()
    text = bundled[f"cifar10_{arch}"].read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# Budget:") and lines[1].startswith("# Measured") and lines[1].endswith("docs/quality.md.")
    assert not lines[2].startswith("#") and f"base: paper/cifar10_{arch}.yaml" in text
    paper, mine = (dataclasses.asdict(resolve(bundled[n])) for n in (f"paper/cifar10_{arch}", f"cifar10_{arch}"))
    chosen = {
        ("decoder", "epochs"): 25,
        ("decoder", "num_id"): 10000,
        ("decoder", "num_ood"): 5000,
        ("decoder", "fw_layers"): 4,
        ("decoder", "prototype_k"): 5,
        ("evaluate", "methods"): ["heatmap", "heatmap+vim+scale", "heatmap+vim", "msp", "energy", "knn", "vim", "scale"],
        ("data", "val_id_source"): "test",  # chosen on half of the test images: the classifiers saw every training image
    }
    weights = {"vim_weight": 1.0, "scale_weight": 1.0} if arch == "wrn40_2" else {"vim_weight": 3.0, "scale_weight": 0.25}
    chosen["evaluate", "params"] = {"heatmap+vim": {"vim_weight": weights["vim_weight"]}, "heatmap+vim+scale": weights,
                                    "ash": {"percentile": 90}, "scale": {"percentile": 90}}
    if arch == "wrn40_2":  # no noise floor for ResNet18: it lost on validation
        chosen["decoder", "noise_floor_quantile"] = 0.99
    for (section, key), value in chosen.items():
        assert mine[section][key] == value != paper[section][key], (section, key)
    for section in paper:
        if section == "name":
            continue
        for key in paper[section]:
            if (section, key) not in chosen:
                assert mine[section][key] == paper[section][key], (section, key)


def test_evaluate_params_merge_per_method_from_every_level(tmp_path: Path) -> None:
    """evaluate.params from a base, a config and --set merge one method and one parameter at a time; a value of
    the wrong shape is one line naming the key."""
    write_yaml(tmp_path, "evaluate:\n  params:\n    knn: {k: 10}\n    ash: {percentile: 90}\n", "root.yaml")
    leaf = write_yaml(tmp_path, "base: root\nevaluate:\n  params:\n    knn: {k: 20}\n    heatmap+vim: {vim_weight: 2}\n", "leaf.yaml")
    cfg = resolve(leaf, {}, ["evaluate.params.ash.percentile=80", "evaluate.params.gen={gamma: 0.5, m: 5}"])
    assert cfg.evaluate.params == {"knn": {"k": 20}, "ash": {"percentile": 80}, "heatmap+vim": {"vim_weight": 2},
                                   "gen": {"gamma": 0.5, "m": 5}}
    assert "evaluate.params.knn' must be a mapping" in config_error(None, {}, ["evaluate.params.knn=5"])
    assert "config key 'evaluate.params' must be a mapping" in config_error(None, {}, ["evaluate.params=[1, 2]"])
    assert "is not of the form section.key" in config_error(None, {}, ["evaluate.params.knn.k.x=5"])
    assert "not of the form section.key" in config_error(None, {}, ["decoder.epochs.x=5"])


def test_base_config_is_applied_first_and_can_be_chained(tmp_path: Path) -> None:
    write_yaml(tmp_path, "name: root\ndecoder:\n  epochs: 7\n  lr: 0.001\nevaluate:\n  params: {heatmap+vim: {vim_weight: 3}}\n", "root.yaml")
    write_yaml(tmp_path, "base: root\nname: middle\ndecoder:\n  epochs: 9\n", "middle.yaml")
    leaf = write_yaml(tmp_path, "base: middle.yaml\ndecoder:\n  fw_layers: 2\n", "leaf.yaml")
    cfg = resolve(leaf, {"decoder.num_ood": 11}, ["evaluate.params.heatmap+vim.vim_weight=0.5"])
    assert (cfg.decoder.epochs, cfg.decoder.lr, cfg.decoder.fw_layers) == (9, 0.001, 2)
    assert cfg.decoder.num_ood == 11 and cfg.evaluate.params["heatmap+vim"] == {"vim_weight": 0.5}  # CLI still above every file
    assert cfg.name == "leaf"  # a base's name never names the derived run
    assert resolve(tmp_path / "middle.yaml").name == "middle"


def test_base_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = write_yaml(tmp_path, "base: nowhere.yaml\n", "a.yaml")
    msg = config_error(missing)
    assert "a.yaml" in msg and "nowhere.yaml" in msg and "does not exist" in msg
    write_yaml(tmp_path, "base: c.yaml\n", "b.yaml")
    loop = write_yaml(tmp_path, "base: b.yaml\n", "c.yaml")
    assert "loops back" in config_error(loop)
    assert "loops back" in config_error(write_yaml(tmp_path, "base: self.yaml\n", "self.yaml"))
    assert "must name another config" in config_error(write_yaml(tmp_path, "base: [x]\n", "d.yaml"))
    write_yaml(tmp_path, "decoder:\n  epochz: 3\n", "bad_base.yaml")
    msg = config_error(write_yaml(tmp_path, "base: bad_base.yaml\n", "e.yaml"))
    assert "bad_base.yaml" in msg and "'decoder.epochz'" in msg and "/e.yaml" not in msg  # the file that holds it
    assert "did you mean 'base'" in config_error(write_yaml(tmp_path, "bsae: x.yaml\n", "f.yaml"))


def test_bundled_config_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundled configs are found by their name under configs/, subfolder included, with or without .yaml."""
    monkeypatch.chdir(tmp_path)  # no file of those names here
    cfg = build_config("demo", {}, None)
    assert cfg.name == "demo" and cfg.model.arch == "wrn10_2" and cfg.data.id == "demo-digits"
    paper = build_config("paper/cifar10_resnet18", {}, None)
    assert paper.name == "paper_cifar10_resnet18" and paper.decoder.epochs == 150
    assert build_config("paper/cifar100_wrn40_2.yaml", {}, None).model.arch == "wrn40_2"
    mine = build_config("cifar10_wrn40_2", {}, None)
    assert mine.name == "cifar10_wrn40_2" and mine.model.arch == "wrn40_2" and mine.decoder.epochs == 25
    assert "does not exist" in str(pytest.raises(ConfigError, build_config, "paper/nope", {}, None).value)
    assert "does not exist" in str(pytest.raises(ConfigError, build_config, "cifar10_resnet18_cpu", {}, None).value)
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "cifar10_resnet18.yaml").write_text("name: local\n")
    assert build_config("paper/cifar10_resnet18.yaml", {}, None).name == "local"  # a file that exists wins


def test_dumped_config_reloads_identically(tmp_path: Path) -> None:
    cfg = resolve(None, {}, ["decoder.num_ood=77", "data.ood=uniform-noise,svhn", "run.num_threads=2", "model.classifier=c.pt"])
    cfg.name = "mine"
    again = resolve(write_yaml(tmp_path, dump_yaml(cfg)))
    assert again.to_dict() == cfg.to_dict()


def test_a_saved_runs_config_is_checked_as_any_other(tmp_path: Path) -> None:
    """A run keeps the config it ran with, written by this hood (a run of another format is refused when opened),
    so a key this hood does not have is an error there too, not silently dropped."""
    saved = resolve(None, {}, ["decoder.num_ood=77"]).to_dict()
    saved["decoder"]["ood_views"] = 4
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert "unknown key 'decoder.ood_views'" in config_error(run / "config.yaml")


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["decoder.num_odd=5"], "did you mean 'num_ood'"),
        (["decodr.epochs=5"], "did you mean 'decoder'"),
        (["pretrain.learning_rate=0.1"], "unknown key 'pretrain.learning_rate'"),
        (["epochs=5"], "section.key"),
        (["decoder.epochs"], "section.key=value"),
    ],
)
def test_unknown_keys_are_named_with_a_suggestion(sets: list[str], needle: str) -> None:
    assert needle in config_error(None, {}, sets)


def test_unknown_key_in_yaml_names_file_and_key(tmp_path: Path) -> None:
    msg = config_error(write_yaml(tmp_path, "decoder:\n  epocs: 3\n"))
    assert "exp.yaml" in msg and "decoder.epocs" in msg and "did you mean 'epochs'" in msg
    msg = config_error(write_yaml(tmp_path, "modle:\n  arch: resnet18\n"))
    assert "modle" in msg and "did you mean 'model'" in msg


@pytest.mark.parametrize(
    ("sets", "key", "needle"),
    [
        (["decoder.epochs=ten"], "decoder.epochs", "integer"),
        (["decoder.epochs=2.5"], "decoder.epochs", "integer"),
        (["decoder.epochs=true"], "decoder.epochs", "integer"),
        (["decoder.lr=fast"], "decoder.lr", "number"),
        (["pretrain.augment=maybe"], "pretrain.augment", "true or false"),
        (["data.ood={a: 1}"], "data.ood", ""),
        (["data.id=[a, b]"], "data.id", "string"),
    ],
)
def test_wrong_types(sets: list[str], key: str, needle: str) -> None:
    msg = config_error(None, {}, sets)
    assert key in msg and needle in msg


def test_wrong_type_in_yaml(tmp_path: Path) -> None:
    msg = config_error(write_yaml(tmp_path, "data:\n  ood: 5\n"))
    assert "data.ood" in msg and "list" in msg
    msg = config_error(write_yaml(tmp_path, "decoder: 5\n"))
    assert "decoder" in msg and "mapping" in msg
    msg = config_error(write_yaml(tmp_path, "- a\n- b\n"))
    assert "mapping" in msg


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ("decoder.fw_layers=5", "decoder.fw_layers"),
        ("decoder.fw_layers=0", "decoder.fw_layers"),
        ("decoder.prototype_k=0", "decoder.prototype_k"),
        ("decoder.prototype_k=101", "decoder.prototype_k"),
        ("evaluate.scale_weight=101", "evaluate.scale_weight"),
        ("decoder.batch_size=1", "decoder.batch_size"),
        ("decoder.lr=0", "decoder.lr"),
        ("decoder.betas=[0.5]", "decoder.betas"),
        ("decoder.betas=[0.5, 1.0]", "decoder.betas"),
        ("decoder.num_ood=0", "decoder.num_ood"),
        ("pretrain.epochs=0", "pretrain.epochs"),
        ("pretrain.momentum=1.5", "pretrain.momentum"),
        ("pretrain.val_fraction=0.7", "pretrain.val_fraction"),
        ("pretrain.scheduler=cosine", "pretrain.scheduler"),
        ("pretrain.weight_decay=-1", "pretrain.weight_decay"),
        ("data.ood_count=0", "data.ood_count"),
        ("data.image_size=4", "data.image_size"),
        ("model.arch=resnet19", "model.arch"),
        ("run.device=gpu", "run.device"),
        ("run.device=cuda:x", "run.device"),
        ("evaluate.fpr_convention=both", "evaluate.fpr_convention"),
        ("evaluate.methods=[]", "evaluate.methods"),
        ("run.num_threads=0", "run.num_threads"),
    ],
)
def test_impossible_values(item: str, key: str) -> None:
    assert f"'{key}'" in config_error(None, {}, [item])


def test_impossible_value_from_named_option() -> None:
    msg = config_error(None, {"decoder.fw_layers": 7})
    assert "decoder.fw_layers" in msg and "7" in msg
    assert "did you mean 'resnet18'" in config_error(None, {"model.arch": "resnet81"})


def test_valid_devices() -> None:
    for dev in ("auto", "cpu", "cuda", "cuda:1"):
        assert resolve(None, {"run.device": dev}).run.device == dev


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "name: x\ndecoder:\n  epochs: 3\n  betas: [0.5, 0.999\nrun:\n  seed: 1\n")
    msg = config_error(path)
    assert "not valid YAML" in msg and str(path) in msg
    assert "line 5" in msg or "line 4" in msg  # the unclosed flow sequence, where the parser notices it
    path = write_yaml(tmp_path, "decoder:\n  epochs: 3\n   lr: 0.1\n", "indent.yaml")
    assert "line 3" in config_error(path)


def test_missing_and_binary_config_files(tmp_path: Path) -> None:
    assert "does not exist" in config_error(tmp_path / "nope.yaml")
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    config_error(path)


def test_empty_yaml_is_the_defaults(tmp_path: Path) -> None:
    cfg = resolve(write_yaml(tmp_path, "# nothing here\n"))
    assert cfg.to_dict() | {"name": "default"} == Config().to_dict()


def test_compile_flag_reaches_the_run_config() -> None:
    """--compile on pretrain/train-decoder sets run.compile, which the jobs pass to the training loops."""
    from hood.cli.options import build_config

    assert build_config("demo", {"run.compile": True}, None).run.compile is True
    assert build_config("demo", {"run.compile": None}, None).run.compile is False
    assert build_config("demo", {}, ["run.compile=true"]).run.compile is True


def test_recommended_configs_hold_no_validation_split_so_any_outlier_set_trains() -> None:
    """A held-out split needs class folders in the outlier set (the default one, tinyimages300k, has none):
    the recommended configs leave it to the quality script, so the quick start runs with the default sets."""
    for name in RECOMMENDED:
        cfg = resolve(bundled_configs()[name])
        assert cfg.data.val_aux_classes == 0, name
        assert cfg.data.aux == Config().data.aux and "heatmap+vim" in cfg.evaluate.methods


def test_every_config_key_is_documented() -> None:
    """docs/configuration.md names every key a user can set, so a new key cannot ship unexplained."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    keys = [f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(Config(), s))]
    assert [k for k in keys if f"`{k}`" not in text and f"`{k}`," not in text] == []


def test_every_detector_parameter_is_documented_with_its_default() -> None:
    """docs/configuration.md's table of evaluate.params names every method's parameters with the constructors'
    defaults: a parameter cannot ship unexplained, nor a default drift from the one place it is defined."""
    from hood.jobs.detectors import parameters

    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[1].startswith("`"):
            names = cells[1].split(", ")
            defaults = cells[2].split(", ") if len(names) > 1 else [cells[2]]  # one list-valued default stays whole
            for name, default in zip(names, defaults, strict=False):
                rows[(cells[0].strip("`"), name.strip("`"))] = default.strip("`")
    for method, params in parameters().items():
        for name, default in params.items():
            assert (method, name) in rows, (method, name)
            want = "none (by feature size)" if default is None else str(list(default) if isinstance(default, tuple) else default)
            assert rows[method, name] == want, (method, name)
