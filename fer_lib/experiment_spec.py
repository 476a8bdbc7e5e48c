"""One run's description, `Experiment`, and the content hash that keys its stored result.

The catalogue (:mod:`fer_lib.catalogue`) builds the book's runs from it; a lab builds its
own the same way. Its hash keys ``results/<name>-<hash>/`` (see :mod:`fer_lib.store`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from .config import TrainConfig, without_later_defaults


@dataclass(frozen=True)
class Experiment:
    """One run of the catalogue.

    kind: "train" (the trainer), "ensemble" (combine `members`' logits; no training), or
        "cut" (slim `slim_from` by `slim_fraction` and score it as it is: no training).
    choose_members: an ensemble whose `members` are candidates: it averages those that
        greedy forward selection on validation keeps (`distill.choose_members`), and
        stores them and the selection's path in its metrics.
    teacher: name of an experiment whose ``train_logits.npz`` the student distils from.
    slim_from / slim_fraction: start from that experiment's weights with this share of
        its expanded channels removed by network slimming (0.0: the weights as they are),
        then fine-tune ("train") or not ("cut"; `train` then only fixes the validation
        split it is scored on). With ``train.prune_sparsity`` the run starts from
        `slim_from`'s weights uncut and prunes single weights instead (`fer_lib.sparsity`).
    from_scratch: train the architecture slimming makes of `slim_from` (its channel
        counts) from a fresh initialisation, not from its weights: the control of Liu et
        al. (2019), whether the pruned network's weights or only its shape carry over.
    teacher_views: 0 (default) distils from the teacher's logits on the clean Training
        images; K > 0 from its probabilities on K stored augmented views of each image,
        the views the student trains on (`fer_lib.softlabels`; the teacher, or every
        member of an ensemble, must have its weights stored).
    view_shift: an ensemble that scores each member's stored weights on the face and its
        shifts by this many pixels (`evaluate.predict_shifted`); 0: their stored logits.
    precision: the export precision the result is reported at (bytes, summary row).
        A run with ``train.qat`` (`fer_lib.qat`) starts from `slim_from`'s weights as they
        are and fine-tunes them BN-folded, its weights rounded as stored at ``train.qat``.
    keep_logits: store float16 logits (True) or uint8 predictions (False).
    """

    name: str
    group: str
    train: TrainConfig = field(default_factory=TrainConfig)
    kind: str = "train"
    members: tuple[str, ...] = ()
    teacher: str | None = None
    slim_from: str | None = None
    slim_fraction: float = 0.0
    precision: str = "fp16"
    keep_logits: bool = False
    teacher_views: int = 0
    choose_members: bool = False
    view_shift: int = 0
    from_scratch: bool = False

    def __post_init__(self):
        if self.teacher_views < 0 or (self.teacher_views and self.teacher is None):
            raise ValueError(f"{self.name}: teacher_views={self.teacher_views!r} needs a "
                             "teacher and a count of at least 0")
        if self.train.qat and self.slim_from is None:
            raise ValueError(f"{self.name}: quantisation-aware training (qat="
                             f"{self.train.qat!r}) fine-tunes a stored run: name it in slim_from")
        if (self.train.prune_sparsity or self.from_scratch) and self.slim_from is None:
            raise ValueError(f"{self.name}: pruning single weights and training a slimmed "
                             "shape from scratch start from a stored run: name it in slim_from")
        if (self.choose_members or self.view_shift) and self.kind != "ensemble":
            raise ValueError(f"{self.name}: choose_members and view_shift apply to an "
                             f"ensemble, not to kind={self.kind!r}")

    def to_dict(self) -> dict:
        """The description its hash is taken of: fields added after results were stored
        (`LATER_EXPERIMENT_FIELDS`) are left out at their default, as are the config's."""
        values = without_later_defaults(asdict(self), LATER_EXPERIMENT_FIELDS)
        values["train"] = self.train.to_dict()  # later options at their default left out
        return json.loads(json.dumps(values))  # tuples -> lists: the JSON form

    @property
    def key(self) -> str:
        """Short content hash of the whole description (name included)."""
        return config_hash(self.to_dict())

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.key}"

    @property
    def needs(self) -> tuple[str, ...]:
        """Experiments that must finish first."""
        return tuple(self.members) + tuple(n for n in (self.teacher, self.slim_from) if n)


# Experiment fields added after results were stored, with their defaults (see to_dict).
LATER_EXPERIMENT_FIELDS = {"teacher_views": 0, "choose_members": False, "view_shift": 0,
                           "from_scratch": False}


def config_hash(config: dict) -> str:
    """First 10 hex digits of the sha256 of the canonical JSON of `config`."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]
