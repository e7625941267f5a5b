"""Training throughput (images/s) of a diffusion U-Net: fp32 vs bf16, eager vs torch.compile, any data set.

Usage: python bench/train_throughput.py [--dataset mnist] [--channels 32,64] [--blocks-per-level 1]
       [--prediction v] [--batch-size 128] [--train-steps 20] [--compile] [--fp32-only]
Prints one line per variant: one optimizer step of the training loss (forward, backward, AdamW) on random
images of the data set's shape. Figures go to docs/speed.md (MNIST) and docs/cifar10.md (CIFAR-10).
"""

from __future__ import annotations

import argparse
import time

import torch

from minicfg.data import DATASETS, DEFAULT_DATASET, get_dataset
from minicfg.nets import build_model
from minicfg.predictions import prediction_loss
from minicfg.train import TrainConfig


def measure(model_config: dict, batch_size: int, train_steps: int, bf16: bool, compile_: bool,
            channels_last: bool) -> float:
    torch.manual_seed(0)
    model = build_model(model_config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    shape = (model_config["image_channels"], model_config["image_size"], model_config["image_size"])
    x = torch.randn(batch_size, *shape).clamp(-1, 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    k = model_config["num_classes"]
    y = torch.randint(0, k, (batch_size,))
    g = torch.Generator().manual_seed(0)
    if compile_:  # prediction_loss calls the network through .raw
        model.raw = torch.compile(model.raw)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = prediction_loss(model, x, y, 0.1, k, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    t = time.perf_counter()
    for _ in range(train_steps):
        step()
    return batch_size * train_steps / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default=DEFAULT_DATASET, help="image shape and classes")
    parser.add_argument("--channels", default=None, help="comma-separated widths (default: TrainConfig's model)")
    parser.add_argument("--blocks-per-level", type=int, default=None)
    parser.add_argument("--prediction", default="v", help="what the U-Net predicts (default v, the presets' choice)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    parser.add_argument("--fp32-only", action="store_true", help="only fp32 eager channels_last (the trainer's mode)")
    args = parser.parse_args()
    record = get_dataset(args.dataset)
    model = dict(TrainConfig().model)
    if args.channels:
        model["channels"] = tuple(int(c) for c in args.channels.split(","))
    if args.blocks_per_level:
        model["blocks_per_level"] = args.blocks_per_level
    model_config = {"image_channels": record.image_shape[0], "image_size": record.image_shape[1],
                    "num_classes": record.num_classes, "prediction": args.prediction, **model}
    n_params = sum(p.numel() for p in build_model(model_config).parameters())
    print(f"{args.dataset} U-Net {model}: {n_params / 1e6:.2f} M parameters; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}", flush=True)
    variants = [(False, False, True)] if args.fp32_only else [(False, False, True), (True, False, True),
                                                               (False, False, False)]
    if args.compile:
        variants += [(False, True, True), (True, True, True)]
    for bf16, compile_, cl in variants:
        ips = measure(model_config, args.batch_size, args.train_steps, bf16, compile_, cl)
        print(f"{'bf16' if bf16 else 'fp32'}  {'compile' if compile_ else 'eager  '}  "
              f"{'channels_last' if cl else 'NCHW         '}  {ips:7.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
