"""How much the stored views' targets differ from the clean-image targets.

    python scripts/describe_softlabels.py [--run views-100k-views-s0]

Reads the soft-label store the run distilled from (the cache in ``runs/softlabels/``,
built by its first run), its teacher's clean-image logits (``train_logits.npz`` in the
teacher's result folder) and the Training labels (needs FER2013), and writes
``results/softlabel_store.json`` (`fer_lib.softlabels.describe_store` over the rows the
student trains on, the validation rows left out). The book reads that file: the store
itself is a cache and is never committed.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fer_lib import catalogue, paths
from fer_lib.data import load_fer2013, train_val_split
from fer_lib.experiments import soft_label_path
from fer_lib.softlabels import STORE_DESCRIPTION, SoftLabelStore, describe_store
from fer_lib.store import find_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="views-100k-views-s0",
                        help="a run that distils on stored views (default: %(default)s)")
    args = parser.parse_args()
    exp = catalogue.get(args.run)
    if not exp.teacher_views:
        parser.error(f"--run {args.run}: it does not distil on stored views")
    results_dir, runs_dir = paths.results_dir(), paths.runs_dir()
    path = soft_label_path(exp, results_dir, runs_dir)
    if not path.exists():
        raise SystemExit(f"{path}: no soft-label store; `fer reproduce --only {args.run}` "
                         "builds it")
    teacher = find_result(catalogue.get(exp.teacher), results_dir)
    with np.load(teacher.path / "train_logits.npz") as z:
        clean_logits = z["logits"]
    _, labels = load_fer2013().split("Training")
    train_rows, _ = train_val_split(labels, exp.train.val_fraction, exp.train.split_seed)
    record = {"run": args.run, "teacher": exp.teacher, "store": path.name,
              **describe_store(SoftLabelStore.load(path), clean_logits, labels, train_rows)}
    out = results_dir / STORE_DESCRIPTION
    out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
