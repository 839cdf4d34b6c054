"""Any image classifier as a hood :class:`Classifier`: a torchvision model or a user's own ``nn.Module``.

What the engine needs of a classifier, read off the model without changing it:

- the penultimate features: the input of its final ``nn.Linear`` (found as the last one registered, or
  named), captured by a forward pre-hook while the model runs its own ``forward``;
- the logits: the model's output, which must be that layer's output;
- the stage maps for the decoder's skip inputs (``fw_layers`` > 1): the outputs of named layers or, by
  default, of the last layer at each spatial size that the decoder draws (found by one probe forward pass).

The engine feeds every classifier hood's normalized input ``(x/255 - 0.5)/0.5``; the wrapper maps it to
the normalization the model was trained with (ImageNet's by default), so the decoder and the engine stay as
they are for every model. Hooks live only for one forward pass: the user's model is left untouched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hood.models.base import Classifier, ClassifierOutput
from hood.models.decoder import DecoderSpec, decoder_layout, generic_decoder_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_PREFIX = "torchvision:"
MODULE_PREFIX = "module:"


def is_external_arch(arch: str) -> bool:
    """Whether ``arch`` names a model hood does not define itself (``torchvision:NAME``, ``module:FILE:FUNC``)."""
    return arch.startswith((TORCHVISION_PREFIX, MODULE_PREFIX))


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode for a probe, each submodule's own mode restored after (a model may keep
    some layers, e.g. frozen BatchNorm, in another mode than the rest)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def find_final_linear(model: nn.Module, name: str | None = None) -> tuple[str, nn.Linear]:
    """The final ``nn.Linear`` of ``model``: the one called ``name``, else the last one registered."""
    modules = dict(model.named_modules())
    if name is not None:
        layer = modules.get(name)
        if not isinstance(layer, nn.Linear):
            found = "no such layer" if layer is None else f"a {type(layer).__name__}"
            raise ValueError(f"linear={name!r} names {found}, not an nn.Linear layer of the model")
        return name, layer
    linears = [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer to read features from; wrap it so that it ends in "
            f"an nn.Linear classification layer (a 1x1-convolution head, as in SqueezeNet, is not supported)"
        )
    return linears[-1]


class WrappedClassifier(Classifier):
    """``module`` behind the :class:`Classifier` interface, for inputs of ``image_size`` pixels a side."""

    def __init__(
        self, module: nn.Module, image_size: int, linear: str | None = None, skip_layers: Sequence[str] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.net = module
        self.training = module.training  # the wrapper is in the mode of the model it wraps
        self.image_size = int(image_size)
        self.linear_name, layer = find_final_linear(module, linear)
        self.feature_dim, self.num_classes = layer.in_features, layer.out_features
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must be three numbers per RGB channel, std positive; got {list(mean)}, {list(std)}")
        # hood's normalized x in [-1, 1] -> the model's (x01 - mean) / std, with x01 = (x + 1) / 2
        std_t = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
        mean_t = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
        self.register_buffer("in_scale", 0.5 / std_t, persistent=False)
        self.register_buffer("in_shift", (0.5 - mean_t) / std_t, persistent=False)
        self.skip_layers = self._skip_layers(skip_layers)

    @property
    def linear(self) -> nn.Linear:  # type: ignore[override]
        return self.net.get_submodule(self.linear_name)  # type: ignore[return-value]

    @contextlib.contextmanager
    def _capture(self, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
        """Hooks for one forward pass: the final layer's input and output, and the outputs of ``layers``."""
        got: dict[str, torch.Tensor] = {}

        def keep(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _args: tuple, out: object) -> None:
                if isinstance(out, torch.Tensor):
                    got[name] = out  # a layer called twice (a shared ReLU) keeps its last output
            return hook

        def take_input(_module: nn.Module, args: tuple) -> None:
            got["\0features"] = args[0]

        handles = [self.linear.register_forward_pre_hook(take_input),
                   self.linear.register_forward_hook(keep("\0linear_out"))]
        handles += [self.net.get_submodule(n).register_forward_hook(keep(n)) for n in layers]
        try:
            yield got
        finally:
            for h in handles:
                h.remove()

    def _skip_layers(self, named: Sequence[str] | None) -> list[str]:
        """The layers whose outputs are the stage maps, shallow to deep; each a side the decoder draws."""
        _, stages = decoder_layout(self.image_size)
        base = self.image_size >> (stages - 1)
        sizes = {base * 2**i for i in range(stages)}
        names = list(named) if named is not None else [n for n, _ in self.net.named_modules() if n]
        with self._capture(names) as got, torch.no_grad(), eval_mode(self.net):
            out = self.net(self.to_model_input(torch.zeros(2, 3, self.image_size, self.image_size, device=self.in_scale.device)))
        self._check_output(out, got)
        maps = {n: t for n, t in got.items() if not n.startswith("\0") and t.ndim == 4}
        if named is not None:
            bad = [n for n in names if n not in maps or maps[n].shape[-1] not in sizes or maps[n].shape[-2] != maps[n].shape[-1]]
            if bad:
                raise ValueError(f"skip layer {bad[0]!r} does not output a square map of a side the decoder draws "
                                 f"({', '.join(map(str, sorted(sizes)))} pixels at this input size)")
            return names
        # per side, the outermost layers that output it (a stage such as ResNet's layer1, not a convolution
        # inside the next stage's first block before its stride), and of those the last to run: the dict
        # holds the outputs in execution order
        best: dict[int, tuple[int, int, str]] = {}
        for order, (n, t) in enumerate(maps.items()):
            side = t.shape[-1]
            if side in sizes and t.shape[-2] == side:
                rank = (-n.count("."), order, n)
                if side not in best or rank[:2] > best[side][:2]:
                    best[side] = rank
        return [n for _, _, n in sorted(best.values(), key=lambda r: r[1])]

    def _check_output(self, out: object, got: dict[str, torch.Tensor]) -> None:
        feats = got.get("\0features")
        if feats is None:
            raise ValueError(f"the final layer {self.linear_name!r} is not used by the model's forward; name the classification layer with linear=")
        if feats.ndim != 2:
            raise ValueError(f"the final layer {self.linear_name!r} gets a {feats.ndim}-d input, not one feature vector per image; name the classification layer with linear=")
        if not isinstance(out, torch.Tensor) or out.shape != got["\0linear_out"].shape or not torch.equal(out, got["\0linear_out"]):
            raise ValueError(f"the model's output is not that of its last nn.Linear {self.linear_name!r}; name the classification layer with linear=")

    def to_model_input(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.in_scale.to(x.dtype) + self.in_shift.to(x.dtype)

    def _run(self, x: torch.Tensor, layers: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with self._capture(layers) as got:
            logits = self.net(self.to_model_input(x))
        return logits, got

    def forward_all(self, x: torch.Tensor) -> ClassifierOutput:
        logits, got = self._run(x, self.skip_layers)
        return ClassifierOutput(got["\0features"], logits, [got[n] for n in self.skip_layers])

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_all(x).maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.to_model_input(x))


def decoder_spec_of(classifier: Classifier, image_size: int, fw_layers: int = 1) -> DecoderSpec:
    """The decoder for any classifier: sized by its feature width and the input resolution, with the
    channels of its ``fw_layers - 1`` deepest stage maps where their skips join."""
    need = fw_layers - 1
    channels: dict[int, int] = {}
    if need:
        probe = torch.zeros(1, 3, image_size, image_size, device=next(classifier.parameters()).device)
        with torch.no_grad(), eval_mode(classifier):
            maps = classifier.stage_maps(probe)
        if need > len(maps):
            raise ValueError(f"fw_layers={fw_layers} needs {need} stage maps, but the model offers {len(maps)} at sides "
                             f"the decoder draws; use fw_layers={len(maps) + 1} at most")
        channels = {m.shape[-1]: m.shape[1] for m in maps[len(maps) - need:]}
    spec = generic_decoder_spec(classifier.feature_dim, classifier.num_classes, image_size, fw_layers, channels)
    sides = {spec.base * 2**i for i in range(len(spec.filters))}
    if not set(channels) <= sides:
        raise ValueError(f"the model's stage maps of {sorted(set(channels) - sides)} pixels match no decoder stage at "
                         f"{image_size}x{image_size} input; use fw_layers=1")
    return spec


def torchvision_model(name: str, num_classes: int) -> nn.Module:
    """An untrained torchvision classification model with ``num_classes`` outputs."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        from difflib import get_close_matches

        near = get_close_matches(name, names, n=1)
        raise ValueError(f"torchvision has no classification model {name!r}" + (f"; did you mean {near[0]!r}?" if near else ""))
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def builder_model(spec: str, num_classes: int) -> nn.Module:
    """``path.py:function``: import the file and call ``function(num_classes)`` (or ``function()``)."""
    path, _, func = spec.rpartition(":")
    if not path or not func:
        raise ValueError(f"{spec!r} is not PATH.py:FUNCTION (a Python file and the function in it that builds the model)")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"model builder file {file} does not exist")
    loaded = importlib.util.spec_from_file_location(f"hood_user_model_{file.stem}", file)
    if loaded is None or loaded.loader is None:
        raise ValueError(f"{file} is not an importable Python file")
    module = importlib.util.module_from_spec(loaded)
    _user_code(file, "importing it", lambda: loaded.loader.exec_module(module))  # type: ignore[union-attr]
    build = getattr(module, func, None)
    if not callable(build):
        raise ValueError(f"{file} defines no function {func!r}")
    model = _user_code(file, f"{func}()", lambda: build(num_classes) if inspect.signature(build).parameters else build())
    if not isinstance(model, nn.Module):
        raise TypeError(f"{file}:{func} returned a {type(model).__name__}, not an nn.Module")
    return model


def _user_code(file: Path, what: str, run: Callable[[], Any]) -> Any:
    """Run the user's model file: whatever it raises, or a ``sys.exit`` in it, is one ValueError naming the file
    and its line (hood's traceback would hide where the user's mistake is); Ctrl-C still interrupts."""
    try:
        return run()
    except KeyboardInterrupt:
        raise
    except SyntaxError as err:
        raise ValueError(f"{file}, line {err.lineno}: {type(err).__name__} ({err.msg}) in {what}; fix the model file") from None
    except (Exception, SystemExit) as err:
        mine = file.resolve()
        lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve() == mine]
        where = f"{file}, line {lines[-1]}" if lines else str(file)
        if isinstance(err, SystemExit):
            raise ValueError(f"{where}: {what} called sys.exit({err.code!r}); a model file must only define the model") from None
        detail = (str(err).splitlines() or [""])[0][:200]
        raise ValueError(f"{where}: {what} raised {type(err).__name__}" + (f" ({detail})" if detail else "")
                         + "; fix the model file") from None


def external_model(arch: str, num_classes: int) -> nn.Module:
    """The model an external ``arch`` names, untrained."""
    if arch.startswith(TORCHVISION_PREFIX):
        return torchvision_model(arch[len(TORCHVISION_PREFIX):], num_classes)
    return builder_model(arch[len(MODULE_PREFIX):], num_classes)


class ModelAdapter:
    """A user's model as the engine's :class:`Classifier`, wrapped once per input size (the wrapper probes the
    model at that size for its stage maps), and its final layer for the detectors that read it.

    ``model`` is a hood :class:`Classifier` (taken as it is), any classification ``nn.Module`` (wrapped with
    ``mean``/``std``, ImageNet's by default, and the final layer ``linear`` names), or the final ``nn.Linear``
    alone (enough for detectors that score features, not images).
    """

    def __init__(self, model: nn.Module | None, linear: str | None = None, skip_layers: Sequence[str] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got a {type(model).__name__}")
        own = isinstance(model, Classifier)
        if own and (mean is not None or std is not None or linear is not None):
            raise ValueError("a hood classifier takes hood's own input normalization and final layer; drop mean, std and linear")
        self.model, self.linear, self.skip_layers = model, linear, skip_layers
        self.mean = tuple(mean) if mean is not None else IMAGENET_MEAN
        self.std = tuple(std) if std is not None else IMAGENET_STD
        self._wrapped: Classifier | None = model if own else None
        if model is not None and not own and not isinstance(model, nn.Linear):
            find_final_linear(model, linear)  # an unsupported model fails here, at construction

    def classifier(self, image_size: int) -> Classifier:
        """The model as a :class:`Classifier` for square inputs of ``image_size`` pixels."""
        if self.model is None or isinstance(self.model, nn.Linear):
            raise ValueError("scoring images needs the whole model; pass it when building the detector")
        if isinstance(self.model, Classifier):
            return self.model
        if not isinstance(self._wrapped, WrappedClassifier) or self._wrapped.image_size != image_size:
            self._wrapped = WrappedClassifier(self.model, image_size, self.linear, self.skip_layers, self.mean, self.std)
        return self._wrapped

    def final_layer(self) -> nn.Linear:
        """The model's final ``nn.Linear``: what the feature-space detectors read of it."""
        if self.model is None:
            raise ValueError("this detector reads the model's final layer; pass the model (or its final nn.Linear) when building it")
        if isinstance(self.model, nn.Linear):
            return self.model
        if isinstance(self.model, Classifier):
            return self.model.linear
        return find_final_linear(self.model, self.linear)[1]


def final_layer(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """``W`` (K x D) and ``b`` (K) of a final linear layer, float64 on the CPU (a layer without bias: zeros)."""
    w = layer.weight.detach().to("cpu", torch.float64)
    b = layer.bias.detach().to("cpu", torch.float64) if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return w, b
