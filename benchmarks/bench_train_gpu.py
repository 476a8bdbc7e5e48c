"""Training throughput (img/s) and seconds per epoch of the catalogue's families.

Run on the machine you want figures for: `python benchmarks/bench_train_gpu.py [--device cuda]`.
Each model trains one full epoch on the Training split (after a short warm-up); the
figures are what `fer reproduce` will see per job when it runs alone.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from fer_lib.data import load_fer2013
from fer_lib.train import (
    TrainConfig,
    make_optimizer,
    make_scheduler,
    prepare_data,
    train_one_epoch,
)

MODELS = {
    "student mobilenet_v2 100k": dict(family="mobilenet_v2", model_args={"width": 0.3824}),
    "teacher resnet": dict(family="resnet"),
    "teacher vgg": dict(family="vgg"),
    "hw3_cnn": dict(family="hw3_cnn"),
    "sweep mobilenet_v1 1k": dict(family="mobilenet_v1", model_args={"width": 0.0215}),
    "sweep cnn 1M": dict(family="cnn", model_args={"width": 0.3768}),
}


def epoch_seconds(cfg: TrainConfig, data, device: torch.device) -> tuple[float, int]:
    from fer_lib.models import build

    gen = torch.Generator().manual_seed(0)
    model = build(cfg.family, **cfg.model_args).to(device).to(memory_format=torch.channels_last)
    splits = prepare_data(data, cfg, device)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, math.ceil(len(splits.train_y) / cfg.batch_size))
    warm = prepare_data(data, TrainConfig(**{**cfg.__dict__, "subset": 2048}), device)
    train_one_epoch(model, warm, cfg, opt, sched, gen, None, torch.channels_last)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train_one_epoch(model, splits, cfg, opt, sched, gen, None, torch.channels_last)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, len(splits.train_y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--only", help="substring of the model names to run")
    args = parser.parse_args()
    device = torch.device(args.device)
    data = load_fer2013()
    print(
        f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}),"
        f" torch {torch.__version__}, batch {args.batch_size}"
    )
    for name, kw in MODELS.items():
        if args.only and args.only not in name:
            continue
        cfg = TrainConfig(batch_size=args.batch_size, **kw)
        seconds, n = epoch_seconds(cfg, data, device)
        print(f"{name:28s} {n / seconds:9.0f} img/s  {seconds:6.1f} s/epoch", flush=True)


if __name__ == "__main__":
    main()
