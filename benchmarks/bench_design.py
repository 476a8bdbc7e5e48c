"""Training speed of every student design candidate on this CPU, measured in one run.

    python benchmarks/bench_design.py [--write]

The design study's runs shared the machine with other work, so their own epoch times
compare candidates unfairly. Here each candidate's trainer is timed the way
`fer reproduce --plan --probe` times it (`fer_lib.plan.probe`: two short epochs on
synthetic images, the second timed, validation included), one after the other, on a
machine with nothing else running. --write records seconds per training image in
``results/design_costs.json``, which `fer_lib.design.design_study` reads.
"""

from __future__ import annotations

import argparse

from fer_lib import catalogue
from fer_lib.design import DESIGN_COSTS
from fer_lib.plan import benchmark_record, probe, write_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"record in results/{DESIGN_COSTS}")
    args = parser.parse_args()
    rates = {}
    for budget, (_, _, designs) in catalogue.DESIGN_BUDGETS.items():
        for design in designs:
            name = catalogue.design_name(budget, design)
            rates[name] = rate = probe(catalogue.get(catalogue.design_name(budget, design, 0)))
            print(f"{name:24s} {rate * 1e3:.3f} ms per training image")
    if args.write:
        record = benchmark_record({"seconds_per_image": rates})
        print(f"wrote {write_benchmark(DESIGN_COSTS, record)}")


if __name__ == "__main__":
    main()
