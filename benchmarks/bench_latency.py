"""CPU latency of every network the book times, measured in one run on a quiet machine.

    python benchmarks/bench_latency.py [--write] [--threads 1] [--repeats 200]

One face at a time (batch 1), one pinned thread by default: for each network
(`fer_lib.timings.timed_runs`: the HW3 CNN, the submissions, the student designs) the
median and interquartile range of `--repeats` timed calls after a warm-up, in eager
PyTorch and in onnxruntime (`fer_lib.deploy.latency_table`). Run it with nothing else
on the machine: other work inflates both the medians and their spread. --write records
the table in ``results/latency.json``, which the chapters read (`timings.stored_latency`).
"""

from __future__ import annotations

import argparse

import torch

from fer_lib.records import benchmark_record, write_benchmark
from fer_lib.timings import LATENCY, REPEATS, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"record in results/{LATENCY}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = measure(threads=args.threads, repeats=args.repeats)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.write:
        record = benchmark_record({"batch": 1, "rows": table.to_dict(orient="records")})
        print(f"wrote {write_benchmark(LATENCY, record)}")


if __name__ == "__main__":
    main()
