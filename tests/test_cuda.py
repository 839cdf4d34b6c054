"""CUDA paths: skipped without a GPU (CI has none); `bench/gpu.sh` runs this file first on a lent GPU.

What only a GPU can check: the decoder step replayed as a CUDA graph trains the same model as the eager
step, the fused optimizers are chosen there, a short pretrain and feature extraction run on the device, and the
prototype searches (float32 there) pick what the CPU's exact float64 search picks.
"""

from __future__ import annotations

import pytest
import torch

from hood.config import DecoderConfig, PretrainConfig
from hood.engine.cuda_graph import GraphedStep
from hood.engine.decoder_training import DecoderData, decoder_step, make_optimizer, prepare_decoder, run_epoch
from hood.engine.features import FeatureSet, extract_features
from hood.engine.pretrain import fit_classifier
from hood.engine.prototypes import nearest_prototypes
from hood.models.decoder import HeatmapDecoder, decoder_spec_for
from hood.models.registry import build_classifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _decoder_data(n: int = 230) -> DecoderData:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    feats = FeatureSet(
        torch.rand(n, 128, generator=g), torch.randn(n, 10, generator=g), [torch.randn(n, 128, 8, 8, generator=g).half()]  # WRN-40-2: deepest map 128 x 8 x 8
    )
    return DecoderData(images, feats, torch.randint(0, n, (n,), generator=g), n).to(CUDA)


def _train(graph: bool, epochs: int = 2) -> tuple[list[float], dict[str, torch.Tensor], GraphedStep | None]:
    torch.manual_seed(0)
    decoder = prepare_decoder(HeatmapDecoder(decoder_spec_for("wrn40_2", 128, 10, fw_layers=2)), CUDA)
    cfg = DecoderConfig(batch_size=20)
    opt = make_optimizer(decoder, cfg, capturable=graph)
    data = _decoder_data()
    step = GraphedStep(lambda rows: decoder_step(decoder, opt, data, rows, 5.0, CUDA), CUDA) if graph else None
    losses = [
        run_epoch(decoder, opt, data, cfg.batch_size, 5.0, torch.Generator().manual_seed(e), CUDA, step=step)
        for e in range(epochs)
    ]
    return losses, {k: v.detach().clone() for k, v in decoder.state_dict().items()}, step


def test_graphed_decoder_steps_train_like_eager_steps() -> None:
    eager_losses, eager_state, _ = _train(graph=False)
    graph_losses, graph_state, step = _train(graph=True)
    assert step is not None and step.graph is not None  # 230 rows / 20: 11 full batches, 3 eager, then replays
    assert step.eager_steps == 3
    assert graph_losses == pytest.approx(eager_losses, rel=1e-3)
    for k, v in eager_state.items():
        assert torch.allclose(graph_state[k].float(), v.float(), rtol=1e-2, atol=1e-3), k
    assert eager_losses[1] < eager_losses[0]  # and it learns


def test_fused_optimizers_on_cuda() -> None:
    decoder = prepare_decoder(HeatmapDecoder(decoder_spec_for("wrn40_2", 128, 10)), CUDA)
    assert make_optimizer(decoder, DecoderConfig()).param_groups[0]["fused"] is True


def test_pretrain_and_features_on_cuda() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(64) % 10
    model = build_classifier("wrn10_2", 10)
    fit_classifier(model, x, y, x[:16], y[:16], PretrainConfig(epochs=1, batch_size=16), 0, CUDA)
    assert all(p.is_cuda and torch.isfinite(p).all() for p in model.parameters())
    feats = extract_features(model, x, CUDA, batch_size=32, num_maps=1)
    assert feats.features.shape[0] == 64 and feats.maps is not None and not feats.features.is_cuda


def test_graphed_pretrain_steps_train_like_eager_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    import hood.engine.pretrain as pretrain_engine

    made: list[GraphedStep] = []

    class Spy(GraphedStep):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(pretrain_engine, "GraphedStep", Spy)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (230, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(230) % 10
    cfg = PretrainConfig(epochs=2, batch_size=20, lr=0.05, plateau_patience=0)  # lr drops on any non-improving epoch
    states = []
    for graph in (False, True):
        torch.manual_seed(0)
        model = build_classifier("wrn10_2", 10)
        monkeypatch.setenv("HOOD_CUDA_GRAPHS", "1" if graph else "0")
        fit_classifier(model, x, y, x[:20], y[:20], cfg, 0, CUDA)
        states.append({k: v.detach().float().clone() for k, v in model.state_dict().items()})
    assert len(made) == 1 and made[0].graph is not None and made[0].eager_steps == 3  # 11 full batches + 1 partial
    for k, v in states[0].items():
        assert torch.allclose(states[1][k], v, rtol=1e-2, atol=2e-3), k


@pytest.mark.parametrize("k", [1, 5])
def test_prototype_search_on_cuda_matches_the_cpu(k: int) -> None:
    g = torch.Generator().manual_seed(3)
    id_f, ood_f = torch.rand(3000, 64, generator=g), torch.rand(700, 64, generator=g)
    id_p, ood_p = torch.randint(0, 10, (3000,), generator=g), torch.randint(0, 10, (700,), generator=g)
    cpu = nearest_prototypes(ood_f, ood_p, id_f, id_p, chunk=256, k=k)
    got = nearest_prototypes(ood_f, ood_p, id_f, id_p, device=CUDA, chunk=256, k=k)
    assert not got.is_cuda and got.shape == cpu.shape
    assert (got == cpu).float().mean() > 0.995  # float32 may swap a near-tie, nothing more
    assert torch.equal(id_p[got.reshape(len(ood_p), -1)[:, 0]], ood_p)  # always the outlier's own class
