"""Where a training step's time goes: ms per step under speed settings, plus a profile.

`python benchmarks/profile_step.py [--device cuda] [--steps 40]`. Variants switch
channels_last, bf16 autocast and cuDNN autotuning one at a time, for the student, a
1k-parameter sweep model and a teacher; the profile lists the most expensive operators
of the student's default step.
"""

from __future__ import annotations

import argparse
import time

import torch

from fer_lib.data import load_fer2013
from fer_lib.distill import kd_loss  # noqa: F401  (imported so profiles match real runs)
from fer_lib.evaluate import to_input
from fer_lib.models import build
from fer_lib.train import (
    AUGMENT_DRAWS,
    TrainConfig,
    augment,
    make_optimizer,
    make_scheduler,
    prepare_data,
)

MODELS = {"student": dict(family="mobilenet_v2", model_args={"width": 0.3824}),
          "sweep-1k": dict(family="mobilenet_v1", model_args={"width": 0.0215}),
          "resnet": dict(family="resnet")}
VARIANTS = {"default": dict(channels_last=True, amp=True, benchmark=True),
            "no-autotune": dict(channels_last=True, amp=True, benchmark=False),
            "contiguous": dict(channels_last=False, amp=True, benchmark=True),
            "fp32": dict(channels_last=False, amp=False, benchmark=True)}


def make_step(cfg: TrainConfig, data, device):
    model = build(cfg.family, **cfg.model_args).to(device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    splits = prepare_data(data, cfg, device)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, 100)
    u = torch.rand(cfg.batch_size, AUGMENT_DRAWS, device=device)
    idx = torch.arange(cfg.batch_size, device=device)

    def step():
        x, _ = augment(to_input(splits.train_x[idx]), cfg, u)
        x = x.contiguous(memory_format=fmt)
        amp = cfg.amp and device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), splits.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return step


def ms_per_step(step, steps: int, device) -> float:
    for _ in range(5):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    device = torch.device(args.device)
    data = load_fer2013()
    for mname, kw in MODELS.items():
        for vname, v in VARIANTS.items():
            torch.backends.cudnn.benchmark = v["benchmark"]
            cfg = TrainConfig(batch_size=args.batch_size, subset=4096,
                              channels_last=v["channels_last"],
                              amp=v["amp"], **kw)
            ms = ms_per_step(make_step(cfg, data, device), args.steps, device)
            rate = args.batch_size / ms * 1000
            print(f"{mname:9s} {vname:12s} {ms:7.2f} ms/step {rate:8.0f} img/s",
                  flush=True)
    torch.backends.cudnn.benchmark = True
    step = make_step(TrainConfig(batch_size=args.batch_size, subset=4096, **MODELS["student"]),
                     data, device)
    ms_per_step(step, 5, device)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(10):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=40))


if __name__ == "__main__":
    main()
