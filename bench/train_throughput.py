"""Training throughput (images/s) of the default MNIST model: fp32 vs bf16, eager vs torch.compile.

Usage: python bench/train_throughput.py [--batch-size 128] [--train-steps 20] [--compile]
Prints one line per variant. Run it on an otherwise idle machine; figures go to docs/speed.md.
"""

from __future__ import annotations

import argparse
import time

import torch

from minicfg.data import get_dataset
from minicfg.diffusion import eps_loss
from minicfg.nets import build_model
from minicfg.train import TrainConfig


def measure(model_config: dict, batch_size: int, train_steps: int, bf16: bool, compile_: bool,
            channels_last: bool) -> float:
    torch.manual_seed(0)
    model = build_model(model_config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fn = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, *get_dataset("mnist").image_shape).clamp(-1, 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))
    g = torch.Generator().manual_seed(0)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = eps_loss(fn, x, y, 0.1, 10, generator=g)
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
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    args = parser.parse_args()
    mnist = get_dataset("mnist")
    model_config = {"image_channels": mnist.image_shape[0], "image_size": mnist.image_shape[1],
                    "num_classes": mnist.num_classes, **TrainConfig().model}
    n_params = sum(p.numel() for p in build_model(model_config).parameters())
    print(f"default model {TrainConfig().model}: {n_params / 1e6:.2f} M parameters; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    variants = [(False, False, True), (True, False, True), (False, False, False)]
    if args.compile:
        variants += [(False, True, True), (True, True, True)]
    for bf16, compile_, cl in variants:
        ips = measure(model_config, args.batch_size, args.train_steps, bf16, compile_, cl)
        print(f"{'bf16' if bf16 else 'fp32'}  {'compile' if compile_ else 'eager  '}  "
              f"{'channels_last' if cl else 'NCHW         '}  {ips:7.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
