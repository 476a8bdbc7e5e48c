"""`fer`: the command line, a thin layer over the library.

    fer summary MODEL [--width W]          per-layer table, params, FLOPs
    fer train CONFIG [--epochs N] ...      train a preset or a .json/.yaml config
    fer evaluate CHECKPOINT                accuracies of a checkpoint on val/public/private
    fer reproduce [--only PATTERN] ...     run every missing experiment of the catalogue
    fer data-summary [--write]             class counts and pixel statistics of FER2013

Errors print one line naming the file or argument at fault (`--debug` for a traceback).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .data import ACCEPTED_FORMS, FER2013Error


def cmd_summary(args) -> None:
    from .models import build, count_flops, count_params, summary

    hparams = {"width": args.width} if args.width is not None else {}
    model = build(args.model, **hparams)
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.width", 120):
        print(summary(model, depth=args.depth).to_string(index=False))
    print(f"\n{args.model} {hparams or '(defaults)'}: {count_params(model):,} parameters, "
          f"{count_flops(model) / 1e6:.1f} MFLOPs per 48x48 image")


def cmd_train(args) -> None:
    from .data import load_fer2013
    from .train import load_config, train

    cfg = load_config(args.config, epochs=args.epochs, subset=args.subset, seed=args.seed)
    data = load_fer2013(args.data)
    out = Path(args.out or Path("runs") / f"train-{Path(str(args.config)).stem}")
    result = train(cfg, data, device=args.device, out_dir=out, resume=args.resume,
                   quiet=args.quiet)
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=1) + "\n")
    print(json.dumps(result.metrics, indent=1))
    print(f"checkpoint and metrics in {out}")


def cmd_evaluate(args) -> None:
    from .data import load_fer2013, train_val_split
    from .evaluate import accuracy, predict_logits
    from .train import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(state)
    data = load_fer2013(args.data)
    images, labels = data.split("Training")
    cfg = state["config"]
    _, val = train_val_split(labels, cfg["val_fraction"], cfg["split_seed"])
    sets = {"val": (images[val], labels[val]), "public": data.split("PublicTest"),
            "private": data.split("PrivateTest")}
    print(f"{state['family']} {state['hparams']}, epoch {state['epoch']}, "
          f"best val epoch {state['best_epoch']}")
    for name, (x, y) in sets.items():
        plain = accuracy(predict_logits(model, x, device=args.device), y)
        tta = accuracy(predict_logits(model, x, tta=True, device=args.device), y)
        print(f"{name:8s} acc {plain:.4f}   with flip TTA {tta:.4f}")


def cmd_data_summary(args) -> None:
    from .data import data_summary, load_fer2013
    from .experiments import write_data_summary

    data = load_fer2013(args.data)
    if args.write:
        print(f"wrote {write_data_summary(data)}")
    else:
        print(json.dumps(data_summary(data), indent=1))


def cmd_run(args) -> None:
    """Run one catalogue experiment in this process (what `reproduce` spawns)."""
    from .data import load_fer2013
    from .experiments import CATALOGUE, load_or_train

    result = load_or_train(CATALOGUE[args.name], load_fer2013(args.data), device=args.device,
                           quiet=args.quiet)
    m = result.metrics
    print(f"{args.name}: val {m['val_acc']:.4f} public {m['public_acc']:.4f} "
          f"private {m['private_acc']:.4f}")


def cmd_reproduce(args) -> None:
    from .experiments import CATALOGUE, find_result, summary_rows, write_summary

    wanted = [n for n in CATALOGUE if not args.only
              or any(fnmatch.fnmatch(n, p) for p in args.only.split(","))]
    todo = [n for n in wanted if find_result(CATALOGUE[n]) is None]
    print(f"{len(wanted)} experiments selected, {len(todo)} to run, {args.jobs} at a time")
    failed = run_jobs(todo, args)
    write_summary()
    rows = [r for r in summary_rows() if r["run"] in wanted]
    print(f"\n{'run':34s} {'params':>9s} {'bytes':>9s} {'prec':>5s} {'val':>6s} "
          f"{'public':>6s} {'private':>7s}")
    for r in rows:
        print(f"{r['run']:34s} {r['params']:9,d} {r['bytes']:9,d} {r['precision']:>5s} "
              f"{r['val_acc']:6.3f} {r['public_acc']:6.3f} {r['private_acc']:7.3f}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (logs in runs/<name>.log)")


def run_jobs(todo: list[str], args) -> list[str]:
    """Run experiments as subprocesses, `args.jobs` at a time, each after what it needs."""
    from .experiments import CATALOGUE, RUNS_DIR

    RUNS_DIR.mkdir(exist_ok=True)
    pending, running, failed, done = list(todo), {}, [], set()
    while pending or running:
        for name in list(pending):
            blocked = [n for n in CATALOGUE[name].needs if n in pending or n in running]
            if any(n in failed for n in CATALOGUE[name].needs):
                pending.remove(name)
                failed.append(name)
            elif not blocked and len(running) < args.jobs:
                pending.remove(name)
                log = open(RUNS_DIR / f"{name}.log", "w")
                cmd = [sys.executable, "-m", "fer_lib.cli", "run", name, "--quiet"]
                cmd += ["--device", args.device] if args.device else []
                cmd += ["--data", args.data] if args.data else []
                running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                  env=dict(os.environ)), log, time.time())
                print(f"[start] {name}", flush=True)
        for name, (proc, log, t0) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[name]
                ok = proc.returncode == 0
                (done.add if ok else failed.append)(name)
                tail = (RUNS_DIR / f"{name}.log").read_text().strip().splitlines()[-1:]
                print(f"[{'done' if ok else 'FAIL'}] {name} ({time.time() - t0:.0f} s) "
                      f"{tail[0] if tail else ''}", flush=True)
        time.sleep(0.5)
    return failed


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    data_help = "FER2013 zip/folder/csv (default: $FER2013_PATH, then data/)"

    p = sub.add_parser("summary", help="per-layer table, parameters and FLOPs of a model")
    p.add_argument("model", help="model family, e.g. mobilenet_v2, cnn, hw3_cnn")
    p.add_argument("--width", type=float, help="width multiplier (default: the family's)")
    p.add_argument("--depth", type=int, default=2, help="module nesting depth shown")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("train", help="train a preset or a config file")
    p.add_argument("config", help="preset name (smoke, student, ...) or a .json/.yaml file")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--subset", type=int, help="train on a stratified subset of N images")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--out", help="output folder (default runs/train-CONFIG)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--data", help=data_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy of a checkpoint on val, public and private")
    p.add_argument("checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("reproduce", help="run the experiments whose results are missing")
    p.add_argument("--only", help="comma-separated glob patterns of experiment names")
    p.add_argument("--jobs", type=int, default=1, help="experiments run at once")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("data-summary", help="class counts and pixel statistics of FER2013")
    p.add_argument("--write", action="store_true",
                   help="write results/data_summary.json (what the book shows)")
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=cmd_data_summary)

    p = sub.add_parser("run", help="run one catalogue experiment (used by reproduce)")
    p.add_argument("name")
    p.add_argument("--device")
    p.add_argument("--data", help=data_help)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = make_parser()
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        # Bad input (a missing or unreadable FER2013, a bad config, a stale result): the
        # message names the file or argument, so one line says it all.
        if args.debug:
            raise
        message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
        if isinstance(err, FER2013Error) and "Getting FER2013" not in message:
            message = f"{message.rstrip('.')}. {ACCEPTED_FORMS}"
        sys.exit(f"fer {args.command}: error: {message}")


if __name__ == "__main__":
    main()
