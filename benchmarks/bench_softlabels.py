"""What teaching on the student's views costs on this CPU: online teachers against a store.

    python benchmarks/bench_softlabels.py [--views N] [--write]

Distilling on the views a student sees needs the teachers' outputs on every augmented
view. Online, the teachers label each training batch again, every epoch; a soft-label
store (`fer_lib.softlabels`) labels K views per image once, and every epoch replays them.
Both costs are the same forward pass, so one rate decides: seconds per view through one
CPU teacher (augmentation included, batches of 512, channels-last, eval mode), measured
here in the same run as the student's training rate (one timed epoch of the real trainer
on synthetic images, as `fer reproduce --plan --probe` does). Weights are untrained:
the time of a forward pass does not depend on their values.

--write records the rates in ``results/softlabel_costs.json``, which the book reads; the
derived costs (seconds per epoch online, the store's one-off cost) are computed there.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fer_lib import catalogue
from fer_lib.models import build
from fer_lib.plan import benchmark_record, probe, write_benchmark
from fer_lib.softlabels import COSTS, build_store


def seconds_per_view(teacher, cfg, images: int, views: int, repeats: int = 3) -> float:
    """Median over `repeats` of the seconds per view of `build_store` with one teacher."""
    gen = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (images, 48, 48), dtype=torch.uint8, generator=gen)
    build_store([teacher], faces[:64], cfg, views=1, seed=0)  # warm-up: first-call costs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        build_store([teacher], faces, cfg, views=views, seed=0)
        times.append((time.perf_counter() - start) / (images * views))
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--views", type=int, default=4, help="views per image timed")
    parser.add_argument("--write", action="store_true", help=f"record in results/{COSTS}")
    args = parser.parse_args()
    torch.manual_seed(0)
    teacher_exp = catalogue.get(catalogue.CPU_TEACHERS[0])
    teacher = build(teacher_exp.train.family, **teacher_exp.train.model_args)
    picks = catalogue.DESIGN_PICKS
    student_exp = (catalogue.get(catalogue.views_name("labels", 0))
                   if catalogue.VIEWS_BUDGET in picks else catalogue.get("student-100k-nokd"))
    view_s = seconds_per_view(teacher, student_exp.train, args.images, args.views)
    student_s = probe(student_exp)
    record = benchmark_record({"teacher": teacher_exp.name, "teacher_seconds_per_view": view_s,
                               "student": student_exp.name,
                               "student_seconds_per_image": student_s})
    print(json.dumps(record, indent=1))
    print(f"one teacher labels a view in {view_s * 1e3:.2f} ms; the student trains on an "
          f"image in {student_s * 1e3:.2f} ms: online teaching by "
          f"{len(catalogue.CPU_TEACHERS)} teachers multiplies an epoch by "
          f"{1 + len(catalogue.CPU_TEACHERS) * view_s / student_s:.1f}")
    if args.write:
        print(f"wrote {write_benchmark(COSTS, record)}")


if __name__ == "__main__":
    main()
