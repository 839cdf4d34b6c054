"""A training step replayed as one CUDA graph: for small models whose steps are launch-bound.

Why: the heatmap decoder's step (gathers, forward, backward, Adam) is a few hundred tiny kernels; on a
GPU each costs more to launch from Python than to run, so an epoch takes as long as the CPU needs to
issue it. Captured once and replayed, the whole step is one launch (about 4x faster per decoder epoch,
docs/speed.md). The captured step is the same code
as the eager one (same kernels, same order), so replaying it trains the same model.

The recipe is PyTorch's whole-network capture: a few real steps run eagerly on a side stream first
(cuDNN picks its algorithms, the optimizer creates its state), then one step is captured with its inputs
read from a static index buffer, and every later full batch copies its indices in and replays.
Requirements the callers meet: no host synchronisation and no host-to-device copies inside the step,
an optimizer built with ``capturable=True``, autocast without its weight-cast cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

StepFn = Callable[[torch.Tensor], torch.Tensor]


GRAPHS_ENV = "HOOD_CUDA_GRAPHS"  # "0" trains with eager steps: for debugging a capture, or timing against one


def graphs_apply(device: torch.device, world_size: int, compiled: bool) -> bool:
    """Whether a training loop replays its steps as graphs: on one CUDA process (DDP's gradient hooks are not
    captured here), not under ``torch.compile`` (which has its own graph modes), and not turned off with
    ``HOOD_CUDA_GRAPHS=0``."""
    return device.type == "cuda" and world_size == 1 and not compiled and os.environ.get(GRAPHS_ENV, "1") != "0"


class GraphedStep:
    """Calls ``step(idx)`` eagerly for the first ``warmup`` full batches, then replays a captured graph.

    ``step`` takes a 1-D index tensor on the device and returns a tensor (its statistics, e.g. the loss);
    it zeroes the gradients itself. With the optimizer step inside ``step`` (the decoder) that is
    ``set_to_none=True``: backward then writes fresh gradients into the graph's memory on every replay,
    and each path's optimizer reads what its own backward wrote. With the optimizer outside (pretrain,
    whose learning rate changes between epochs) it must be ``set_to_none=False``: the graph then zeroes
    and fills the very ``.grad`` tensors the eager optimizer reads. Batches of another length than the
    first (the last, partial one) run eagerly: a graph is fixed to its shapes.
    """

    def __init__(self, step: StepFn, device: torch.device, warmup: int = 3) -> None:
        if device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.step, self.device, self.warmup = step, device, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_idx: torch.Tensor | None = None
        self.static_loss: torch.Tensor | None = None
        self.batch_len: int | None = None
        self.eager_steps = 0
        self._side = torch.cuda.Stream(device)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.batch_len is None:
            self.batch_len = len(idx)
        if len(idx) != self.batch_len:
            return self.step(idx)
        if self.graph is None:
            if self.eager_steps < self.warmup:
                return self._eager_on_side_stream(idx)
            self._capture(idx)
        assert self.static_idx is not None and self.graph is not None and self.static_loss is not None
        self.static_idx.copy_(idx)
        self.graph.replay()
        return self.static_loss

    def _eager_on_side_stream(self, idx: torch.Tensor) -> torch.Tensor:
        """Warm-up steps are real training steps, run on a side stream as the capture recipe asks."""
        main = torch.cuda.current_stream(self.device)
        self._side.wait_stream(main)
        with torch.cuda.stream(self._side):
            loss = self.step(idx)
        main.wait_stream(self._side)
        self.eager_steps += 1
        return loss

    def _capture(self, idx: torch.Tensor) -> None:
        """Record one step; nothing runs during capture, so the caller replays it for this batch."""
        self.static_idx = idx.clone()
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static_loss = self.step(self.static_idx)
        self.graph = graph
