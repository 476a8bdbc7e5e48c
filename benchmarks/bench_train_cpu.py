"""CPU training speed: today's trainer against the fast path, through `fer_lib.train.train`.

    FER2013_PATH=/path/to/fer2013.zip python benchmarks/bench_train_cpu.py [--images 2048]

1. Epochs. For the 200k and 27k students and a 16k MobileNetV1 of the sweep (their
   catalogue configs: batch 256, SGD, channels_last; the students distil from a cached
   teacher, here random logits), ``train(cfg, fast=False)`` (today's trainer, eager
   PyTorch) and ``train(cfg, fast=True)`` (`fer_lib.fastpath`) run in turn, A B A B, in
   one process. Each run trains 2 epochs on a stratified subset of --images training
   images, with the validation set cut to keep the real 9:1 train:validation proportion,
   and the second epoch's seconds (training + validation, set-up excluded, as
   ``history[i]["seconds"]`` records them) are compared. A ratio is the median of the
   rounds' ratios. On a shared machine only ratios mean something: the load average is
   printed, and ``--clock cpu`` counts this process's CPU seconds instead of wall seconds
   (robust to other load with ``--threads 1``; with more threads it counts spinning too).
2. Profile of the 200k student's step, today's and the fast path's: milliseconds per
   step by phase (augmentation, forward, loss, backward, optimizer, and the validation
   pass per training step at 9:1) and the top operators by self CPU time.
3. ``--ablation``: each change alone, and what did not help, on the 200k student's step
   (interleaved, ms per step).
4. ``--accuracy SEEDS``: the 27k student trained 5 epochs by each trainer per seed: the
   fast path must land within the seed spread of today's trainer.
5. ``--fer-train EPOCHS``: the issue's target as a reader meets it: the 200k student's
   config trained on the full training split through the ``fer train`` command, once
   with ``FER_FAST=0`` and once with the fast path; epoch seconds from each checkpoint's
   history (set-up, data loading and scoring excluded). Minutes per epoch.
6. ``--depthwise``: the 200k student's depthwise convolutions (forward and backward, batch
   256) in three formulations: oneDNN on channels_last (today's), oneDNN on NCHW, and
   nine shifted multiply-adds (channels_last elementwise passes).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

import fer_lib.train as trainer
from fer_lib import catalogue, fastkernels, fastpath
from fer_lib.checkpoint import load_checkpoint
from fer_lib.data import load_fer2013
from fer_lib.distill import CachedTeacher, kd_loss
from fer_lib.evaluate import predict_logits, to_input
from fer_lib.models import build

MODELS = ("student-200k-kd", "student-27k-kd", "sweep-mobilenet-16k-s0")
CL = torch.channels_last


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def bench_config(name: str, images: int, n_training: int):
    """The experiment's config on `images` training images and a 9:1 validation set."""
    return dataclasses.replace(catalogue.get(name).train, epochs=2, subset=images,
                               val_fraction=images / 9 / n_training)


def random_teacher(n_training: int, name: str) -> CachedTeacher | None:
    if catalogue.get(name).teacher is None:
        return None
    gen = torch.Generator().manual_seed(0)
    return CachedTeacher(torch.randn(n_training, 2, 7, generator=gen))


@contextlib.contextmanager
def clock(kind: str):
    """Make the trainer's epoch timer read wall seconds or this process's CPU seconds."""
    if kind == "wall":
        yield
        return
    real = trainer.time
    trainer.time = types.SimpleNamespace(perf_counter=time.process_time)
    try:
        yield
    finally:
        trainer.time = real


# ----------------------------------------------------------------------------- 1. epochs
def compare_epochs(data, args) -> None:
    n_training = len(data.split("Training")[1])
    print(f"1. epoch seconds ({args.clock} clock), today's trainer vs the fast path; "
          f"{args.images} training images, {args.rounds} rounds A B A B:")
    for name in MODELS:
        cfg = bench_config(name, args.images, n_training)
        teacher = random_teacher(n_training, name)
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for fast in (False, True):
                with clock(args.clock):
                    result = trainer.train(cfg, data, device="cpu", teacher=teacher,
                                           quiet=True, fast=fast)
                seconds[fast].append(result.history[1]["seconds"])
        ratios = [old / new for old, new in zip(seconds[False], seconds[True], strict=True)]
        old, new = (statistics.median(seconds[f]) for f in (False, True))
        images = args.images * 10 / 9  # training + validation images per epoch
        print(f"  {name:24s} {result.metrics['params']:8,d} params  today {old:6.1f} s "
              f"({images / old:5.0f} img/s)  fast {new:6.1f} s ({images / new:5.0f} img/s)  "
              f"{statistics.median(ratios):.2f}x  [rounds: "
              f"{' '.join(f'{r:.2f}' for r in ratios)}]", flush=True)


# ----------------------------------------------------------------------------- 2. profile
PHASES = ("augment", "forward", "loss", "backward", "optimizer", "evaluation")


def profiled_steps(cfg, data, fast: bool, steps: int = 3):
    """The trainer's step, phase by phase under `record_function`, and its validation
    pass (one ninth of the steps' images); the first step warms up, unrecorded."""
    torch.manual_seed(0)
    model = build(cfg.family, **cfg.model_args).to(memory_format=CL)
    rows = trainer.prepare_data(data, cfg, torch.device("cpu"))
    opt = trainer.make_optimizer(model, cfg)
    sched = trainer.make_scheduler(opt, cfg, steps + 1)
    teacher = random_teacher(len(data.split("Training")[1]), "student-200k-kd")
    draws = torch.rand(cfg.batch_size, trainer.AUGMENT_DRAWS)
    idx = torch.arange(cfg.batch_size)
    val = rows.val_x[: cfg.batch_size * steps // 9]
    when = torch.profiler.schedule(wait=0, warmup=1, active=steps, repeat=1)
    with fastpath.training(model, fast), \
            profile(activities=[ProfilerActivity.CPU], schedule=when) as prof:
        for step in range(steps + 1):
            model.train()
            with record_function("augment"):
                x, flipped = trainer.augment(to_input(rows.train_x[idx]), cfg, draws)
                x = x.contiguous(memory_format=CL)
            with record_function("forward"):
                logits = model(x)
            with record_function("loss"):
                loss = kd_loss(logits, teacher(x, rows.train_rows[idx], flipped),
                               rows.train_y[idx], cfg.kd_temperature, cfg.kd_alpha,
                               cfg.label_smoothing)
            with record_function("backward"):
                opt.zero_grad(set_to_none=True)
                loss.backward()
            with record_function("optimizer"):
                opt.step()
                sched.step()
            if step == steps:
                with record_function("evaluation"):
                    predict_logits(model, val, channels_last=True)
            prof.step()
    return prof


def phase_table(prof, steps: int) -> dict[str, float]:
    spans = {e.key: e.cpu_time_total / 1000 / steps for e in prof.key_averages()
             if e.key in PHASES}
    return {p: spans.get(p, 0.0) for p in PHASES}


def profile_student(data, images: int) -> None:
    n_training = len(data.split("Training")[1])
    cfg = bench_config("student-200k-kd", images, n_training)
    profs = {fast: profiled_steps(cfg, data, fast) for fast in (False, True)}
    print("\n2. profile of the 200k student's step (batch 256, 1 warm-up step dropped, "
          "3 steps), ms per step:")
    tables = {fast: phase_table(profs[fast], 3) for fast in (False, True)}
    print(f"  {'':8s}" + "".join(f"{p:>12s}" for p in (*PHASES, "total")))
    for fast, label in ((False, "today"), (True, "fast")):
        row = tables[fast]
        print(f"  {label:8s}" + "".join(f"{row[p]:12.0f}" for p in PHASES)
              + f"{sum(row.values()):12.0f}")
    for fast, label in ((False, "today's trainer"), (True, "the fast path")):
        print(f"\n  top operators by self CPU time, {label}:")
        table = profs[fast].key_averages().table(sort_by="self_cpu_time_total", row_limit=12,
                                                 max_name_column_width=44)
        print("\n".join("  " + line for line in table.splitlines()))


# ----------------------------------------------------------------------------- 3. ablation
@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to run the step: memory format, fast-path parts, autocast, threads, compile."""

    fmt: torch.memory_format = CL
    heap: bool = False
    fused: bool = False
    bf16: bool = False
    threads: int | None = None
    compiled: bool = False


VARIANTS = {
    "today (eager, channels_last)": Variant(),
    "+ heap allocations only": Variant(heap=True),
    "+ fused BatchNorm+act only": Variant(fused=True),
    "fast path (both)": Variant(heap=True, fused=True),
    "today, NCHW everywhere": Variant(fmt=torch.contiguous_format),
    "today, 1 thread": Variant(threads=1),
    "fast path, 1 thread": Variant(heap=True, fused=True, threads=1),
    "today + bf16 autocast (other math)": Variant(bf16=True),
}


def step_fn(cfg, model, opt, teacher, rows, v: Variant):
    forward = torch.compile(model) if v.compiled else model

    def step(x, flipped, idx):
        x = x.contiguous(memory_format=v.fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.bf16):
            logits = forward(x)
        loss = kd_loss(logits.float(), teacher(x, rows.train_rows[idx], flipped),
                       rows.train_y[idx], cfg.kd_temperature, cfg.kd_alpha, cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def ablation(data, args) -> None:
    """Each variant on its own copy of one initial model, interleaved round by round."""
    n_training = len(data.split("Training")[1])
    cfg = bench_config("student-200k-kd", args.images, n_training)
    rows = trainer.prepare_data(data, cfg, torch.device("cpu"))
    teacher = random_teacher(n_training, "student-200k-kd")
    torch.manual_seed(0)
    base = build(cfg.family, **cfg.model_args)
    variants = dict(VARIANTS)
    if args.compile:
        variants["today + torch.compile (inductor)"] = Variant(compiled=True)
    steps = {}
    for name, v in variants.items():
        model = copy.deepcopy(base).to(memory_format=v.fmt)
        steps[name] = (model, step_fn(cfg, model, trainer.make_optimizer(model, cfg), teacher,
                                      rows, v))
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        idx = torch.randint(len(rows.train_y), (cfg.batch_size,), generator=gen)
        x, flipped = trainer.augment(to_input(rows.train_x[idx]), cfg,
                                     torch.rand(len(idx), trainer.AUGMENT_DRAWS, generator=gen))
        batches.append((x, flipped, idx))
    threads = torch.get_num_threads()
    now = time.perf_counter if args.clock == "wall" else time.process_time
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds + 1):  # round 0 warms up (and compiles)
        for name, v in variants.items():
            model, step = steps[name]
            torch.set_num_threads(v.threads or threads)
            with contextlib.ExitStack() as stack:
                if v.heap:
                    stack.enter_context(fastpath.heap_allocations())
                if v.fused:
                    stack.enter_context(fastpath.fused_batchnorm(model))
                t0 = now()
                for batch in batches:
                    step(*batch)
                timings[name].append((now() - t0) / len(batches))
    torch.set_num_threads(threads)
    today = timings["today (eager, channels_last)"][1:]
    print(f"\n3. ablation, 200k student, ms per step ({args.clock} clock, {threads} threads "
          f"unless said, {args.rounds} rounds):")
    for name, times in timings.items():
        ratio = statistics.median(a / b for a, b in zip(today, times[1:], strict=True))
        print(f"  {name:36s} {statistics.median(times[1:]) * 1000:7.0f} ms   {ratio:.2f}x",
              flush=True)


# ----------------------------------------------------------------------------- 4. accuracy
def accuracy_check(data, seeds: int, epochs: int = 5) -> None:
    """The 27k student (its real cached teacher when results/ holds it) trained `epochs`
    epochs by each trainer for seeds 0..seeds-1: best validation accuracy and test
    accuracies (flip TTA), and Welch's test of the difference. Minutes per run."""
    from fer_lib.data import evaluation_sets
    from fer_lib.evaluate import score
    from fer_lib.experiments import MissingResultError, _teacher_for
    from fer_lib.paths import results_dir
    from fer_lib.stats import welch

    exp = catalogue.get("student-27k-kd")
    try:
        teacher = _teacher_for(exp, data, results_dir())
    except MissingResultError:
        teacher = random_teacher(len(data.split("Training")[1]), exp.name)
    print(f"\n4. accuracy, {exp.name} for {epochs} epochs, seeds 0-{seeds - 1}:")
    best: dict[bool, list[float]] = {False: [], True: []}
    for seed in range(seeds):
        for fast in (False, True):
            cfg = dataclasses.replace(exp.train, epochs=epochs, seed=seed)
            result = trainer.train(cfg, data, device="cpu", teacher=teacher, quiet=True,
                                   fast=fast)
            sets = evaluation_sets(data, cfg.val_fraction, cfg.split_seed)
            acc = score(result.model, sets).accuracy["fp32"]
            best[fast].append(result.metrics["best_val_acc"])
            print(f"  seed {seed} {'fast ' if fast else 'today'}  best val "
                  f"{best[fast][-1]:.4f}  public {acc['public']:.4f}  private "
                  f"{acc['private']:.4f}", flush=True)
    test = welch(best[True], best[False])
    print(f"  mean best val: today {np.mean(best[False]):.4f} (sd "
          f"{np.std(best[False], ddof=1):.4f}), fast {np.mean(best[True]):.4f} (sd "
          f"{np.std(best[True], ddof=1):.4f}); fast - today {test['diff']:+.4f}, "
          f"Welch p = {test['p']:.2f}")


# ----------------------------------------------------------------------------- 5. fer train
def fer_train_epochs(epochs: int, name: str = "student-200k-kd") -> None:
    """`name`'s config (without its teacher) through ``fer train`` for `epochs` epochs on
    the full training split, ``FER_FAST=0`` then the fast path; seconds per epoch."""
    print(f"\n5. fer train, {name}'s config, {epochs} epochs on the full training split:")
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(dataclasses.asdict(catalogue.get(name).train)))
        for fast in ("0", "1"):
            out = Path(tmp) / f"fast{fast}"
            subprocess.run([sys.executable, "-m", "fer_lib.cli", "train", str(config),
                            "--device", "cpu", "--epochs", str(epochs), "--out", str(out),
                            "--quiet"], check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, FER_FAST=fast))
            history = load_checkpoint(out / "checkpoint.pt")["history"]
            seconds[fast] = [h["seconds"] for h in history]
    for fast, label in (("0", "today (FER_FAST=0)"), ("1", "fast path")):
        print(f"  {label:20s} epochs {' '.join(f'{s:6.1f}' for s in seconds[fast])} s  "
              f"mean {statistics.mean(seconds[fast]):6.1f} s")
    print(f"  ratio of mean epoch seconds: "
          f"{statistics.mean(seconds['0']) / statistics.mean(seconds['1']):.2f}x", flush=True)


# ----------------------------------------------------------------------------- 6. depthwise
def depthwise_inputs(cfg) -> list[tuple[nn.Conv2d, tuple[int, ...]]]:
    """Each depthwise convolution of `cfg`'s model with its input shape at the batch size."""
    model = build(cfg.family, **cfg.model_args).eval()
    found: list[tuple[nn.Conv2d, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: found.append((m, tuple(i[0].shape))))
             for m in model.modules()
             if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    with torch.no_grad():
        model(torch.zeros(1, 1, 48, 48))
    for hook in hooks:
        hook.remove()
    return [(conv, (cfg.batch_size, *shape[1:])) for conv, shape in found]


def shifted_depthwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """`conv` (k x k depthwise, zero padding) as k*k shifted slices times per-channel weights."""
    k, s, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    xp = F.pad(x, (pad, pad, pad, pad))
    h = (x.size(2) + 2 * pad - k) // s + 1
    w = (x.size(3) + 2 * pad - k) // s + 1
    out = None
    for i in range(k):
        for j in range(k):
            tap = xp[:, :, i:i + s * (h - 1) + 1:s, j:j + s * (w - 1) + 1:s]
            term = tap * conv.weight[:, 0, i, j].view(1, -1, 1, 1)
            out = term if out is None else out + term
    return out


def depthwise_formulations(rounds: int) -> None:
    """Each formulation on its own copy of the layers, inputs laid out before timing."""
    cfg = catalogue.get("student-200k-kd").train
    layers = depthwise_inputs(cfg)
    ways = {"oneDNN, channels_last (today)": (CL, lambda x, c: c(x)),
            "oneDNN, NCHW": (torch.contiguous_format, lambda x, c: c(x)),
            "9 shifted multiply-adds": (CL, shifted_depthwise)}
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(shape, generator=gen) for _, shape in layers]
    prepared = {name: [(copy.deepcopy(conv).to(memory_format=fmt),
                        x.contiguous(memory_format=fmt).requires_grad_())
                       for (conv, _), x in zip(layers, inputs, strict=True)]
                for name, (fmt, _) in ways.items()}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds + 1):  # round 0 warms up
        for name, (_, run) in ways.items():
            t0 = time.perf_counter()
            for conv, x in prepared[name]:
                run(x, conv).sum().backward()
            times[name].append(time.perf_counter() - t0)
    base = times["oneDNN, channels_last (today)"][1:]
    print(f"\n6. depthwise convolutions of the 200k student ({len(layers)} layers, batch "
          f"{cfg.batch_size}), forward + backward, ms per step:")
    for name, t in times.items():
        ratio = statistics.median(a / b for a, b in zip(base, t[1:], strict=True))
        print(f"  {name:32s} {statistics.median(t[1:]) * 1000:7.0f} ms   {ratio:.2f}x")


NOTE = """\
Where the time went, and what the fast path changes (same loss, same optimizer, float32;
fer_lib/fastpath.py). At 48 x 48 with 9 to 36 channels in the first layers the step is
bound by memory traffic: BatchNorm and ReLU6 passes over the wide activations took ~60%
of it, the convolutions (oneDNN, channels_last, near memory speed already) ~35%.
(a) Allocating each step's activations cost ~100k page faults per 200k-student step
(glibc maps every block over 32 MiB afresh and unmaps it on free); keeping the heap
removes them. (b) BatchNorm2d + ReLU/ReLU6 fused in C++: one statistics pass and one
normalise+clamp pass forward, one reduction and one gradient pass backward (PyTorch:
~8 and 8, and its channels_last kernels vectorise along 9-36 channels, not 16 lanes).
Measured on 2 idle cores, 2 threads, wall clock (3 Dec 2026): (a) alone 1.23x and (b)
alone 3.35x of the step, both 4.12x (section 3; the step timed apart from the trainer,
beside 8 other models); epochs of 2,048 images 2.5-2.9x (200k), 3.6-3.7x (27k),
2.6-2.7x (16k) (section 1); through `fer train` on the full split, 2 epochs, 107-110 s
against 36-39 s an epoch, 2.7-3.1x in two runs (section 5). The 27k student after 5
epochs, 4 seeds: best validation 37.2 +- 2.7 % today, 38.3 +- 0.9 % fast (Welch p 0.47):
within the seed spread (section 4). On 1 thread, CPU clock (Nov 2026), (a) gave 1.12x,
(b) 1.29x and both 1.56x; on 2 threads the gain is larger because eager PyTorch's step
was slower on 2 threads than on 1 (section 3: 1,684 against 1,187 ms) while the fast
path's scales (742 to 413 ms).
Measured and not kept: torch.compile of the model (no graph break; 0.86x) and of the
whole step with compiled autograd and the optimizer (0.93x): inductor fuses BatchNorm
with ReLU6 too, but its generated backward is slow, it hands oneDNN's convolution
backward gradients in another layout (15 copies a step) and allocations still fault;
NCHW for all layers (0.51x on 1 thread, 1.06x on 2 in section 3, beside a slow eager
BatchNorm; depthwise convolutions alone run at 0.41x in NCHW, section 6, and 1x1 ones
3-4x slower, so no per-layer mix helps); depthwise convolutions as 9 shifted
multiply-adds (0.04x, section 6); oneDNN off (0.2x); 1x1 convolutions as MKL matmuls
(~1%); BatchNorm+ReLU6 fused into the next 1x1 convolution in L2-sized row chunks
(1.01x); streaming stores (1.01x); bf16 autocast (other math, and 0.79x on 1 thread).
Batch size changes the math (BatchNorm statistics, SGD steps) and buys nothing: even 64
images' activations overflow the 2 MiB L2 (img/s nearly flat from 64 to 256). Threads:
with other jobs on the 2 cores, 2 threads stall at every parallel region a preempted
thread holds (wall-clock ratios at 2 threads swing from 1.6x to 10x round to round);
with 1 thread per job, CPU-clock ratios are steady. Evaluation: scoring already runs
the plain and mirrored views as one batch (evaluate.predict_views), and the trainer's
validation pass (plain view) takes ~3% of the fast step (section 2). What is left is
oneDNN's convolutions (about half of the fast step by the profile) and the memory
traffic between separate kernels: going further means custom convolutions that apply
BatchNorm+ReLU6 as they load, or fewer bytes per activation (bf16 storage: other
math)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="training images per epoch")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds per model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--ablation", action="store_true", help="each change alone")
    parser.add_argument("--compile", action="store_true",
                        help="with --ablation: also torch.compile (minutes to compile)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--accuracy", type=int, default=0, metavar="SEEDS",
                        help="also train the 27k student 5 epochs per trainer and seed")
    parser.add_argument("--depthwise", action="store_true",
                        help="also time 3 formulations of the depthwise convolutions")
    parser.add_argument("--fer-train", type=int, default=0, metavar="EPOCHS",
                        help="also time EPOCHS full epochs of the 200k student via fer train")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    kernels = fastkernels.load()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {load_line()}; "
          f"fast-path kernels {'ready' if kernels else 'UNAVAILABLE'} "
          f"({time.perf_counter() - t0:.0f} s to build or load)\n")
    data = load_fer2013()
    compare_epochs(data, args)
    if not args.no_profile:
        profile_student(data, args.images)
    if args.ablation:
        ablation(data, args)
    if args.accuracy:
        accuracy_check(data, args.accuracy)
    if args.depthwise:
        depthwise_formulations(args.rounds)
    if args.fer_train:
        fer_train_epochs(args.fer_train)
    print(f"\n{load_line()} at the end\n\n{NOTE}")


if __name__ == "__main__":
    main()
