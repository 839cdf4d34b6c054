"""Throughput of the Python API's ``HeatmapDetector.predict`` against the bare forward passes it wraps.

Both sides score the same images with the same torchvision ResNet18 (10 classes, 32x32) and the same decoder,
in one process, interleaved, fastest round of each:

- bare: ``model(x)`` on a batch already normalized as the model expects (a hook keeps the final layer's
  input), then ``decoder(features, argmax(logits))`` and the heatmap score: what hand-written code would do;
- API: ``detector.predict(images)`` on the uint8 images, batch by batch (conversion, normalization,
  feature extraction, decoding and scoring included).

The target: the API reaches at least 0.9x the bare throughput. The decoder is untrained (its weights do not
change the time). With ``--device cuda`` both sides run on the GPU; the default is the CPU.

    python bench/bench_api.py [--n 2048] [--batch 128] [--rounds 3] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys

from common import best_of, machine, pin_threads, report

pin_threads(sys.argv)

import torch  # noqa: E402
import torchvision  # noqa: E402

import hood  # noqa: E402
from hood.models.adapter import IMAGENET_MEAN, IMAGENET_STD, decoder_spec_of  # noqa: E402
from hood.models.decoder import HeatmapDecoder, heatmap_score  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2048, help="images scored per round")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--target", type=float, default=0.9)
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    size = 32
    model = torchvision.models.resnet18(num_classes=10).eval().to(device)
    images = torch.randint(0, 256, (a.n, 3, size, size), dtype=torch.uint8)

    classifier = hood.HeatmapDetector(model, batch_size=a.batch, device=device).adapter.classifier(size)
    decoder = HeatmapDecoder(decoder_spec_of(classifier, size)).eval()
    det = hood.HeatmapDetector(model, decoder, batch_size=a.batch, device=device)

    mean = torch.tensor(IMAGENET_MEAN, device=device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=device)[None, :, None, None]
    normalized = [((images[s : s + a.batch].to(device).float() / 255 - mean) / std) for s in range(0, a.n, a.batch)]
    bare_decoder = HeatmapDecoder(decoder.spec).eval().to(device)
    bare_decoder.load_state_dict(decoder.state_dict())
    kept: dict[str, torch.Tensor] = {}
    model.fc.register_forward_pre_hook(lambda _m, args: kept.update(features=args[0]))

    def bare() -> None:
        with torch.inference_mode():
            for x in normalized:
                logits = model(x.contiguous(memory_format=torch.channels_last))
                heatmap_score(bare_decoder(kept["features"], logits.argmax(1))).cpu()

    def api() -> None:
        det.predict(images)

    api()  # warm-up: the first call converts the weights to channels-last, which the bare side then shares
    bare()
    best = best_of({"bare": bare, "api": api}, a.rounds)
    print(f"machine: {machine()}")
    print(f"torchvision resnet18 + heatmap decoder, {a.n} images of {size}x{size}, batch {a.batch}, {device}")
    print(f"bare forward (normalized float input): {best['bare']:.2f} s = {a.n / best['bare']:.0f} images/s")
    print(f"HeatmapDetector.predict (uint8 input): {best['api']:.2f} s = {a.n / best['api']:.0f} images/s")
    return report("API predict throughput / bare forward", best["bare"] / best["api"], a.target,
                  f"{a.n / best['api']:.0f} vs {a.n / best['bare']:.0f} images/s")


if __name__ == "__main__":
    sys.exit(main())
