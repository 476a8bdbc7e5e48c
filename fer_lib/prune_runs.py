"""The pruning study's runs: three ways to make a trained network smaller, from one seed.

Slimming (`fer_lib.prune`) cuts whole channels; magnitude pruning (`fer_lib.sparsity`)
zeroes single weights. Each claims to keep accuracy at fewer bytes, and each is usually
compared with its own baseline. Liu et al. (2019) asked the question that decides
whether pruning teaches anything: train the pruned *shape* from scratch for as many
epochs, and see whether the pruned *weights* were worth keeping. From one dense run this
module builds the three arms, so that the catalogue (:mod:`fer_lib.catalogue`) can repeat
them over seeds:

- **magnitude**: the dense run's weights, the smallest share zeroed (ranked as the file
  stores them), fine-tuned with the mask;
- **slimming**: the same network trained again with the L1 penalty on its BatchNorm
  gates, its weakest hidden channels cut, fine-tuned;
- **scratch**: slimming's shape, freshly initialised, trained for the slimming arm's
  epochs in all (penalised training plus fine-tune).
"""

from __future__ import annotations

import dataclasses
import functools

from .experiment_spec import Experiment

GROUP = "prune-study"


def arm_names(size: str, share: float, seed: int) -> dict[str, str]:
    """{arm: run name} of one seed: ``magnitude-200k-50-s0``, ``slimsparse-200k-s0``
    (slimming's penalised training), ``slim-200k-50-s0``, ``slimscratch-200k-50-s0``."""
    cut = f"{size}-{round(share * 100)}-s{seed}"
    return {"magnitude": f"magnitude-{cut}", "sparse": f"slimsparse-{size}-s{seed}",
            "slimming": f"slim-{cut}", "scratch": f"slimscratch-{cut}"}


def pruning_arms(dense: Experiment, size: str, share: float, bn_l1: float,
                 finetune: dict) -> list[Experiment]:
    """The runs of one seed, from `dense` (a stored label-only run of the design):
    `share` of its weights (magnitude) or of its hidden channels (slimming) removed;
    `bn_l1` the penalty of slimming's training (on `dense`'s schedule); `finetune` the
    TrainConfig fields of both fine-tunes (say ``epochs=10, lr=0.01``)."""
    names = arm_names(size, share, dense.train.seed)
    recipe, tuned = dense.train, dict(finetune, bn_l1=0.0)
    sparse_cfg = dataclasses.replace(recipe, bn_l1=bn_l1)
    run = functools.partial(Experiment, group=GROUP, precision=dense.precision,
                            keep_logits=True)
    return [
        run(names["magnitude"], train=dataclasses.replace(recipe, prune_sparsity=share,
                                                          **tuned), slim_from=dense.name),
        run(names["sparse"], train=sparse_cfg),
        run(names["slimming"], train=dataclasses.replace(sparse_cfg, **tuned),
            slim_from=names["sparse"], slim_fraction=share),
        # As many epochs as the slimming arm trained in all, from a fresh start.
        run(names["scratch"], train=dataclasses.replace(
            recipe, epochs=recipe.epochs + finetune["epochs"]),
            slim_from=names["sparse"], slim_fraction=share, from_scratch=True),
    ]


def slimming_runs(student: Experiment, sparse: Experiment, fractions: tuple[float, ...],
                  finetune: dict) -> list[Experiment]:
    """Network slimming of `student` (the chapter's first study): `sparse` (its twin
    trained with the L1 penalty), each share of `fractions` cut from it and fine-tuned on
    `finetune`; and the contrasts, cut without fine-tuning, from `student` (no penalty)
    and from `sparse` (step 1 without step 3)."""
    slimmed = [dataclasses.replace(sparse, name=f"{student.name}-slim{round(f * 100)}",
                                   slim_from=sparse.name, slim_fraction=f,
                                   train=dataclasses.replace(sparse.train, **finetune))
               for f in fractions]
    cuts = [Experiment(f"{source.name}-cut{round(f * 100)}", "ablation-cut", source.train,
                       kind="cut", slim_from=source.name, slim_fraction=f, precision="int8")
            for source in (student, sparse) for f in fractions]
    return [sparse, *slimmed, *cuts]
