"""How closely the distillation study's students follow their teacher, and where it helps.

    python scripts/describe_imitation.py [--only RUN ...]

For every stored run of the distillation study (`fer_lib.catalogue.views_groups`), and
for the long schedule's run of the same design on labels only (`long_name`), scores
the student on the Training images it learned from (clean, with the mirror averaged as in
every stored score) and reads its stored validation logits; compares each with the
teacher's logits on the same images (`fer_lib.distill_study.imitation`) and writes
``results/kd_imitation.json``. Needs FER2013 (the labels and the training pixels); the
book reads the file, so a reader without the data sees the same numbers. With ``--only``,
just those runs are scored again; the others keep their entries in the existing file.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fer_lib import catalogue, paths
from fer_lib.data import load_fer2013, train_val_split
from fer_lib.distill_study import IMITATION_DESCRIPTION, imitation
from fer_lib.evaluate import predict_logits
from fer_lib.store import MissingResultError, find_result, load_result


def main() -> None:
    runs = [name for names in catalogue.views_groups().values() for name in names]
    runs.append(catalogue.long_name(catalogue.VIEWS_BUDGET))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=runs, metavar="RUN",
                        help="score only these runs, keeping the others' entries")
    args = parser.parse_args()
    stored = [name for name in runs if find_result(catalogue.get(name)) is not None]
    if not stored:
        raise SystemExit("no run of the distillation study is stored yet")
    teachers = {catalogue.get(name).teacher for name in stored} - {None}
    if len(teachers) != 1:
        raise SystemExit(f"the study's arms should share one teacher, found {sorted(teachers)}")
    teacher_name = teachers.pop()
    teacher = load_result(teacher_name)
    with np.load(teacher.path / "train_logits.npz") as z:
        # (N, 2, 7): each image and its mirror; averaged like every stored (TTA) score.
        teacher_train = z["logits"].astype(np.float32).mean(axis=1)
    images, labels = load_fer2013().split("Training")
    cfg = catalogue.get(stored[0]).train
    train_rows, val_rows = train_val_split(labels, cfg.val_fraction, cfg.split_seed)
    teacher_val = teacher.logits()["val"]
    out = paths.results_dir() / IMITATION_DESCRIPTION
    record = {"teacher": teacher_name, "runs": {}}
    if args.only:
        if not out.exists():
            raise SystemExit(f"--only: {out} does not exist yet; score every run first")
        record = json.loads(out.read_text())
        if record["teacher"] != teacher_name:
            raise SystemExit(f"{out} was written for teacher {record['teacher']}, "
                             f"not {teacher_name}: score every run again")
    for name in args.only or stored:
        if name not in stored:
            raise SystemExit(f"--only {name}: the run is not stored")
        exp = catalogue.get(name)
        if (exp.train.val_fraction, exp.train.split_seed) != (cfg.val_fraction, cfg.split_seed):
            raise SystemExit(f"{name}: its validation split differs from {stored[0]}'s")
        result = load_result(name)
        try:
            model = result.model()
        except MissingResultError as err:
            raise SystemExit(f"{name}: {err}") from err
        student_train = predict_logits(model, images[train_rows], tta=True, channels_last=True)
        record["runs"][name] = {
            "train": imitation(student_train, teacher_train[train_rows], labels[train_rows]),
            "val": imitation(result.logits()["val"], teacher_val, labels[val_rows])}
        print(f"{name}: train {record['runs'][name]['train']['accuracy']:.3f}", flush=True)
    out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
