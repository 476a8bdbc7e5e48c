"""Deployment numbers of the default student and the HW3 baseline on this CPU.

    python benchmarks/bench_deploy.py [--threads N] [--repeats R]

Weights are untrained: bytes, params and FLOPs are exact anyway, and latency does not
depend on the values of the weights.
"""

from __future__ import annotations

import argparse

import torch

from fer_lib import models
from fer_lib.deploy import deployment_numbers
from fer_lib.quantize import PRECISIONS

CASES = (("mobilenet_v2", {}), ("mobilenet_v2", {"width": 0.195}), ("hw3_cnn", {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default")
    for family, hparams in CASES:
        row = deployment_numbers(models.build(family, **hparams), repeats=args.repeats,
                                 threads=args.threads)
        print(f"\n{family} {hparams or '(defaults)'}")
        print(f"  params {row['params']:,}   FLOPs/image {row['flops'] / 1e6:,.1f} M")
        print("  bytes  " + "   ".join(f"{p} {row[f'bytes_{p}']:,}" for p in PRECISIONS))
        for runtime in ("torch", "ort"):
            times = "   ".join(f"batch {k.rsplit('b', 1)[1]}: {v:.3f}" for k, v in row.items()
                               if k.startswith(f"{runtime}_ms_"))
            print(f"  {runtime:5s}  ms/image  {times}")


if __name__ == "__main__":
    main()
