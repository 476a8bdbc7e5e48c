"""`fer`: the command line, a thin layer over the library.

    fer summary MODEL [--width W]          per-layer table, params, FLOPs
    fer train CONFIG [--epochs N] ...      train a preset, a config file or a book's run
    fer evaluate TARGET                    accuracies of a checkpoint, stored run or export
    fer reproduce [--only PATTERN] ...     run every missing experiment of the catalogue
    fer rescore [--only PATTERN]           re-score stored runs in float32 (weights kept)
    fer data-summary [--write]             class counts and pixel statistics of FER2013
    fer predict MODEL TEST.CSV -o OUT.CSV  the homework's id,label submission (flip TTA)
    fer score SUBMISSION.CSV               its public and private accuracy, as on Kaggle
    fer package [RUN] -o hw8/              the graded folder (numpy predictor), measured
    fer int8 TARGET -o DIR                 int8 inference with onnxruntime, scored and timed

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

from . import paths
from .data import ACCEPTED_FORMS, FER2013Error, FER2013RowError, load_fer2013

PUBLIC_COMMANDS = ("summary", "train", "evaluate", "reproduce", "rescore", "data-summary",
                   "predict", "score", "package", "int8")


def cmd_summary(args) -> None:
    import pandas as pd

    from .models import build, count_flops, count_params, summary

    hparams = {"width": args.width} if args.width is not None else {}
    model = build(args.model, **hparams)
    with pd.option_context("display.max_rows", None, "display.width", 120):
        print(summary(model, depth=args.depth).to_string(index=False))
    print(f"\n{args.model} {hparams or '(defaults)'}: {count_params(model):,} parameters, "
          f"{count_flops(model) / 1e6:.1f} MFLOPs per 48x48 image")


def cmd_train(args) -> None:
    from .coursework import end_report, start_report, train_and_score, training_target
    from .data import evaluation_sets

    cfg, exp = training_target(args.config, width=args.width, params=args.params,
                               epochs=args.epochs, subset=args.subset, seed=args.seed)
    out = Path(args.out or paths.runs_dir() / f"train-{Path(str(args.config)).stem}")
    if (out / "checkpoint.pt").exists() and not (args.resume or args.force):
        raise FileExistsError(f"{out / 'checkpoint.pt'} exists: pass --resume to continue it "
                              "or --force to start over and overwrite it")
    print(start_report(exp.name if exp else str(args.config), cfg), flush=True)
    data = load_fer2013(args.data)
    metrics = train_and_score(cfg, data, out, exp=exp, device=args.device or None,
                              resume=args.resume, quiet=args.quiet)
    print(end_report(metrics, evaluation_sets(data, cfg.val_fraction, cfg.split_seed)["val"][1],
                     out))


def cmd_evaluate(args) -> None:
    from .data import evaluation_sets, load_fer2013
    from .evaluate import score
    from .store import Result
    from .targets import resolve_target, stored_output_lines

    target = resolve_target(args.target, args.precision)
    model, split, described = target.model, target.split, target.description
    precisions = tuple(dict.fromkeys(("fp32", *target.precisions)))
    data = load_fer2013(args.data)
    if isinstance(model, Result):
        print("\n".join(stored_output_lines(model, evaluation_sets(data, *split))))
        return
    scores = score(model, evaluation_sets(data, *split), precisions, device=args.device)
    print(described)
    print("accuracy with flip TTA (float32 arithmetic; weights at each precision)")
    print(f"{'precision':14s} {'val':>7s} {'public':>7s} {'private':>7s}")
    for precision, accs in scores.accuracy.items():
        print(f"{precision:14s} {accs['val']:7.4f} {accs['public']:7.4f} {accs['private']:7.4f}")
    plain = scores.plain
    print(f"{'fp32, no TTA':14s} {plain['val']:7.4f} {plain['public']:7.4f} "
          f"{plain['private']:7.4f}")


def cmd_data_summary(args) -> None:
    from .data import data_summary, load_fer2013
    from .store import write_data_summary

    data = load_fer2013(args.data)
    if args.write:
        print(f"wrote {write_data_summary(data)}")
    else:
        print(json.dumps(data_summary(data), indent=1))


def cmd_predict(args) -> None:
    from .homework import make_submission

    chosen, rows = make_submission(args.model, args.test, args.out, args.precision, args.device)
    print(f"wrote {args.out}: id,label for {rows:,} images, {chosen.name} at "
          f"{chosen.precision} (mean logits of each image and its mirror)")


def cmd_score(args) -> None:
    from .homework import read_submission, score_submission

    labels = read_submission(args.submission)  # a bad file fails before the data loads
    scores = score_submission(labels, load_fer2013(args.data), args.submission)
    n_pub, n_priv = scores["n_public"], scores["n_private"]
    print(f"{args.submission}: {len(labels):,} predictions scored as on Kaggle")
    print(f"public  (ids 0..{n_pub - 1}, {n_pub:,} images): {scores['public']:.5f}")
    print(f"private (ids {n_pub}..{n_pub + n_priv - 1}, {n_priv:,} images): "
          f"{scores['private']:.5f}")


def cmd_package(args) -> None:
    from .homework import package

    print(package(args.run, args.out, args.precision, args.budget, args.force).breakdown())


def cmd_int8(args) -> None:
    from .int8 import describe, int8_report
    from .store import Result
    from .targets import resolve_target

    target = resolve_target(args.target)
    if isinstance(target.model, Result):
        raise ValueError(f"{args.target}: its weights are not committed; int8 needs them")
    print(describe(int8_report(Path(args.target).stem, target.model, load_fer2013(args.data),
                               args.out, split=target.split, n=args.images, seed=args.seed,
                               method=args.method, repeats=args.repeats)))


def cmd_run(args) -> None:
    """Run one catalogue experiment in this process (what `reproduce` spawns)."""
    from . import catalogue
    from .experiments import load_or_train

    result = load_or_train(catalogue.get(args.name), load_fer2013(args.data),
                           device=args.device, quiet=args.quiet, rerun=args.rerun)
    m = result.metrics
    print(f"{args.name}: val {m['val_acc']:.4f} public {m['public_acc']:.4f} "
          f"private {m['private_acc']:.4f}")


def _selected(only: str | None) -> list[str]:
    from . import catalogue

    names = list(catalogue.experiments())
    if not only:
        return names
    patterns = only.split(",")
    unmatched = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in names)]
    if unmatched:
        raise ValueError(f"--only: no catalogue run matches {', '.join(unmatched)}")
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def cmd_reproduce(args) -> None:
    from . import catalogue
    from .report import write_paired_tests
    from .store import find_result, summary_rows, write_summary

    wanted = _selected(args.only)
    todo = [n for n in wanted if args.rerun or find_result(catalogue.get(n)) is None]
    if args.plan:
        from .plan import plan, plan_table

        print(f"planning {len(todo)} runs: reading results/ and runs/"
              + (" and probing each new architecture" if args.probe else ""), flush=True)
        print(plan_table(plan(todo, measure=args.probe, record=args.write,
                              log=lambda line: print(line, flush=True))))
        return
    how = f"{args.jobs} at a time" if args.backend == "local" else "as Ray tasks"
    print(f"{len(wanted)} experiments selected, {len(todo)} to run ({how})")
    failed = run_jobs(todo, args) if args.backend == "local" else _run_on_ray(todo, args)
    write_summary()
    if set(todo) - set(failed):  # new runs: their McNemar pairs too (needs the labels)
        print(f"wrote {write_paired_tests(load_fer2013(args.data))}")
    rows = [r for r in summary_rows() if r["run"] in wanted]
    print(f"\n{'run':34s} {'params':>9s} {'bytes':>9s} {'prec':>5s} {'val':>6s} "
          f"{'public':>6s} {'private':>7s}")
    for r in rows:
        print(f"{r['run']:34s} {r['params']:9,d} {r['bytes']:9,d} {r['precision']:>5s} "
              f"{r['val_acc']:6.3f} {r['public_acc']:6.3f} {r['private_acc']:7.3f}")
    if failed:
        raise RuntimeError(f"failed: {', '.join(failed)} (logs in runs/<name>.log)")


def _run_on_ray(todo: list[str], args) -> list[str]:
    from .cluster import ClusterOptions, check_address, run_on_ray

    try:
        import ray  # noqa: F401
    except ImportError:
        raise RuntimeError('--backend ray needs Ray: pip install -e ".[cluster]"') from None
    check_address(args.address)  # before loading the data: fail fast
    if not todo:
        return []
    options = ClusterOptions(address=args.address, cpus_per_run=args.cpus_per_run,
                             gpus_per_run=args.gpus_per_run, retries=args.retries,
                             device=args.device)
    return run_on_ray(todo, load_fer2013(args.data), options, results_dir=paths.results_dir(),
                      runs_dir=paths.runs_dir())


def cmd_rescore(args) -> None:
    from . import catalogue
    from .rescoring import rescore
    from .store import find_result, write_summary

    data = load_fer2013(args.data)
    for name in _selected(args.only):
        if find_result(catalogue.get(name)) is not None:
            print(f"{name}: {rescore(catalogue.get(name), data, device=args.device)}",
                  flush=True)
    print(f"wrote {write_summary()}")


def run_jobs(todo: list[str], args) -> list[str]:
    """Run experiments as subprocesses, `args.jobs` at a time, each after what it needs."""
    from . import catalogue
    from .plan import Progress, plan

    runs = paths.runs_dir()
    runs.mkdir(parents=True, exist_ok=True)
    progress = Progress(plan(todo))  # recorded probes only: starting must stay instant
    pending, running, failed, done = list(todo), {}, [], set()
    while pending or running:
        for name in list(pending):
            needs = catalogue.get(name).needs
            blocked = [n for n in needs if n in pending or n in running]
            if any(n in failed for n in needs):
                pending.remove(name)
                failed.append(name)
            elif not blocked and len(running) < args.jobs:
                pending.remove(name)
                log = open(runs / f"{name}.log", "w")
                cmd = [sys.executable, "-m", "fer_lib.cli", "run", name, "--quiet"]
                cmd += ["--device", args.device] if args.device else []
                cmd += ["--data", args.data] if args.data else []
                cmd += ["--rerun"] if args.rerun else []
                running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                  env=dict(os.environ)), log, time.time())
                print(f"[start] {name}", flush=True)
        for name, (proc, log, t0) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[name]
                ok = proc.returncode == 0
                (done.add if ok else failed.append)(name)
                tail = (runs / f"{name}.log").read_text().strip().splitlines()[-1:]
                print(f"[{'done' if ok else 'FAIL'}] {name} ({time.time() - t0:.0f} s) "
                      f"{tail[0] if tail else ''}\n  {progress.done(name, time.time() - t0)}",
                      flush=True)
        time.sleep(0.5)
    return failed


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    # The metavar lists the public commands only: `run` is reproduce's internal worker.
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{" + ",".join(PUBLIC_COMMANDS) + "}")
    _add_model_commands(sub)
    _add_catalogue_commands(sub)
    _add_homework_commands(sub)
    return parser


DATA_HELP = "FER2013 zip/folder/csv (default: $FER2013_PATH, then data/)"


def _add_model_commands(sub) -> None:
    """summary, train, evaluate: one model at a time."""
    p = sub.add_parser("summary", help="per-layer table, parameters and FLOPs of a model")
    p.add_argument("model", help="model family, e.g. mobilenet_v2, cnn, hw3_cnn")
    p.add_argument("--width", type=float, help="width multiplier (default: the family's)")
    p.add_argument("--depth", type=int, default=2, help="module nesting depth shown")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("train", help="train a preset, a config file or one of the book's runs")
    p.add_argument("config", help="a preset (quick: your first real model; smoke, ...), a "
                   ".json/.yaml file, a catalogue run or its results/<run>/config.json")
    p.add_argument("--width", type=float, help="the model's width multiplier")
    p.add_argument("--params", type=int, help="size the model to about N parameters")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--subset", type=int, help="train on a stratified subset of N images")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--out", help="output folder (default: the project's runs/train-CONFIG)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--force", action="store_true", help="overwrite a checkpoint in --out")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy on val, public and private at each precision")
    p.add_argument("target", help="a checkpoint (.pt), an exported model (.npz), a result "
                                  "folder (results/<run>-<hash>) or a catalogue run name")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "int4"),
                   help="only this precision (default: all; fp32 always)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", help=DATA_HELP)
    p.set_defaults(func=cmd_evaluate)


def _add_catalogue_commands(sub) -> None:
    """reproduce, rescore, data-summary and the hidden worker `run`: the stored results."""
    p = sub.add_parser("reproduce", help="run the experiments whose results are missing")
    p.add_argument("--only", help="comma-separated glob patterns of experiment names")
    p.add_argument("--jobs", type=int, default=1, help="experiments run at once")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--rerun", action="store_true",
                   help="run the selected experiments even if stored (replaces their results)")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local subprocesses (default) or Ray tasks (pip install -e .[cluster])")
    p.add_argument("--address", help="Ray: auto, host:port or ray://host:port "
                                     "(default: start a local Ray)")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs each run asks for")
    p.add_argument("--gpus-per-run", type=float, default=0.0,
                   help="Ray: GPUs each run asks for; a fraction lets small runs share one")
    p.add_argument("--retries", type=int, default=2, help="Ray: retries of a failed run")
    p.add_argument("--plan", action="store_true",
                   help="list the runs to do with their estimated CPU time, and stop")
    p.add_argument("--probe", action="store_true", help="with --plan: time each architecture "
                   "without a recorded probe")
    p.add_argument("--write", action="store_true", help="with --probe: record the new probes "
                   "in results/cpu_probes.json (a committed file)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("rescore", help="re-score stored runs in float32 from their weights")
    p.add_argument("--only", help="comma-separated glob patterns of experiment names")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", help=DATA_HELP)
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("data-summary", help="class counts and pixel statistics of FER2013")
    p.add_argument("--write", action="store_true",
                   help="write results/data_summary.json (what the book shows)")
    p.add_argument("--data", help=DATA_HELP)
    p.set_defaults(func=cmd_data_summary)

    p = sub.add_parser("run")  # no help: hidden from --help, spawned by `reproduce`
    p.add_argument("name")
    p.add_argument("--device")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--rerun", action="store_true")
    p.set_defaults(func=cmd_run)


def _add_homework_commands(sub) -> None:
    """predict, score, package: the course's own formats (fer_lib.homework)."""
    precisions = ("fp32", "fp16", "int8", "int4")
    model_help = ("a catalogue run name (e.g. long-200k-early), a result folder, an "
                  "exported model (.npz), or your own fer train folder or checkpoint (.pt)")
    p = sub.add_parser("predict", help="write the homework's id,label submission")
    p.add_argument("model", help=model_help)
    p.add_argument("test", help="the course's test.csv (id,feature), or any FER2013 form: "
                                "its PublicTest then PrivateTest images")
    p.add_argument("-o", "--out", default="submission.csv", help="default: submission.csv")
    p.add_argument("--precision", choices=precisions,
                   help="default: the run's reported one (your own run's: the best that fits)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("score", help="public and private accuracy of a submission, as Kaggle")
    p.add_argument("submission", help="an id,label CSV (fer predict)")
    p.add_argument("--data", help=DATA_HELP + "; it must have the test labels")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("package", help="the graded hw8/ folder: weights, numpy predictor, "
                                       "hw8_test.sh; measured as du --apparent-size")
    p.add_argument("run", nargs="?", help=model_help + " (default: the homework submission, "
                                          "fer_lib.submission(225_000))")
    p.add_argument("-o", "--out", default="hw8", help="the folder to write (default: hw8)")
    p.add_argument("--precision", choices=precisions,
                   help="default: the run's reported one (your own run's: the best that fits)")
    # fer_lib.quantize.STRONG_BUDGET, spelled out: `fer --help` must not import torch.
    p.add_argument("--budget", type=int, default=225_000,
                   help="refuse a folder over this many bytes (default 225,000; the simple "
                        "baseline's was 650,000)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=cmd_package)

    p = sub.add_parser("int8", help="static int8 with onnxruntime: fp32.onnx, int8.onnx and "
                                    "int8.json (accuracy and ms per image of both)")
    p.add_argument("target", help=model_help)
    p.add_argument("-o", "--out", required=True, help="the folder to write")
    p.add_argument("--images", type=int, default=1000, help="calibration images, drawn from "
                   "the Training rows a run trains on (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="which calibration images (default 0)")
    p.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax",
                   help="how activation ranges are read from them (default minmax)")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per batch size "
                   "(default 30; batch 1 gets four times as many)")
    p.add_argument("--data", help=DATA_HELP)
    p.set_defaults(func=cmd_int8)


def main(argv: list[str] | None = None) -> None:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        # Bad input (a missing or unreadable FER2013, a bad config, a stale result): the
        # message names the file or argument, so one line says it all.
        if args.debug:
            raise
        message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
        # The accepted forms help with a file of none of them; they would bury a row error.
        if (isinstance(err, FER2013Error) and not isinstance(err, FER2013RowError)
                and "Getting FER2013" not in message):
            message = f"{message.rstrip('.')}. {ACCEPTED_FORMS}"
        sys.exit(f"fer {args.command}: error: {' '.join(message.split())}")


if __name__ == "__main__":
    main()
