"""Soft-label store: the teacher ensemble's probabilities on the views a student will see.

Consistent teaching (Beyer et al., 2022; FKD; Apple's dataset reinforcement): a student
learns best from the teacher's output on the *same* augmented view it trains on. Running
the teachers online costs (teachers x forward) per step, every epoch. A store pays once:
for each Training image it keeps K augmentation draws and the ensemble's probabilities
on the K views those draws make; the trainer rebuilds a view from its draws through
`fer_lib.augment` and uses the stored probabilities as the target. The store is a cache,
rebuilt from committed teacher weights, never committed itself.

Draw-order contract (what makes a store reproducible from its header)
---------------------------------------------------------------------
``build_store(..., views=K, seed=s)`` draws, before any teacher runs, in one call::

    u = torch.rand((N, K, AUGMENT_DRAWS), generator=torch.Generator().manual_seed(s))

float32 on the CPU, so ``u[i, k, j]`` is number ``(i * K + k) * AUGMENT_DRAWS + j`` of the
seeded stream: image-major, then view, then the draw `augment` reads at index j (0 angle,
1 zoom, 2 flip coin, 3-4 shift, 5-9 erasing). A store of the first n images is therefore
the prefix of a store of more images with the same seed and K. View k of image i is
``augment(to_input(images[i:i+1]), cfg, u[i, k][None])``: `augment` treats every image
on its own, so on a CPU the view is bit-identical whatever batch it is built in (the
trainer's shuffled batches included). The stored draws, not the seed, are what the
trainer replays; a store built on a GPU holds the same draws, with views (and so
probabilities) that differ from the CPU's by float rounding only.

Each view's target is the ensemble rule of ``distill.average_logits(mode="probs")``: the
mean of the teachers' softmax probabilities (teachers in eval mode), stored as float16.

How the trainer uses it (`StoredViewTeacher`)
--------------------------------------------
Today `train_one_epoch` draws ``torch.rand(len(order), AUGMENT_DRAWS, generator=gen)``
after the epoch's ``randperm`` and calls ``teacher(x, rows, flipped)``. With a store, the
teacher has a ``draws`` method and the epoch goes::

    order = torch.randperm(len(splits.train_y), generator=gen).to(device)
    draws, views = (t.to(device) for t in teacher.draws(splits.train_rows[order], gen, cfg))
    ...  # per batch [start:start + len(idx)]:
    x, flipped = augment(to_input(splits.train_x[idx]), cfg, draws[start:start + len(idx)])
    target = teacher(x, splits.train_rows[idx], flipped, views[start:start + len(idx)])

``draws`` checks `cfg`'s augmentation against the store's, then picks one stored view
per row with ``torch.randint(K, (len(order),), generator=gen)`` (one call per epoch, so
a resumed run, whose generator state the checkpoint keeps, replays the same choice). The
teacher returns the log of the stored probabilities: valid logits for `distill.kd_loss`.
Runs without a store keep the ``torch.rand`` branch, so their generator stream, and so
their stored results, do not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .augment import AUGMENT_DRAWS, augment, mirrored
from .config import TrainConfig
from .evaluate import PIXEL_MEAN, PIXEL_STD, to_input

STORE_FORMAT = "fer-softlabels"
STORE_VERSION = 1
NUM_CLASSES = 7
# The TrainConfig fields `augment` reads: a store is valid for any config that shares them.
AUGMENT_FIELDS = ("shift", "flip", "rotate", "scale", "erase")
# The header entries a caller's expectations are checked against (the rest is a record).
CHECKED = ("augment", "normalise", "n", "images", "teachers", "views", "seed")
PROB_FLOOR = 1e-12  # as `average_logits`: float16 rounds tiny probabilities to 0


class StoreMismatchError(ValueError):
    """A stored soft-label file is not the one a caller expects; the message names the
    file and every header entry that differs."""


# ----------------------------------------------------------------------------- fingerprints
def teacher_fingerprint(model: nn.Module) -> str:
    """sha256 of a state dict: every entry's name, dtype, shape and bytes, by name.

    Independent of device and memory format (channels-last weights hash as contiguous).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def images_fingerprint(images: np.ndarray | torch.Tensor) -> str:
    """sha256 of uint8 images (N, 48, 48) with their shape."""
    a = np.ascontiguousarray(torch.as_tensor(images).cpu().numpy(), dtype=np.uint8)
    return hashlib.sha256(f"{a.shape}|".encode() + a.tobytes()).hexdigest()


def augment_fields(cfg: TrainConfig) -> dict:
    """The augmentation settings of `cfg`, as the header stores them."""
    return {name: getattr(cfg, name) for name in AUGMENT_FIELDS}


def draw_views(n: int, views: int, seed: int) -> torch.Tensor:
    """The draw-order contract: u (n, views, AUGMENT_DRAWS) float32 from one seeded call."""
    return torch.rand((n, views, AUGMENT_DRAWS), generator=torch.Generator().manual_seed(seed))


def make_views(images: torch.Tensor, u: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Views (B, 1, 48, 48) of uint8 `images` (B, 48, 48) made by draws `u` (B, D)."""
    return augment(to_input(images), cfg, u)[0]


# ----------------------------------------------------------------------------- the store
@dataclass
class SoftLabelStore:
    """probs float16 (N, K, 7), draws float32 (N, K, AUGMENT_DRAWS) and a header dict."""

    probs: torch.Tensor
    draws: torch.Tensor
    header: dict

    @property
    def n(self) -> int:
        return int(self.probs.shape[0])

    @property
    def views(self) -> int:
        return int(self.probs.shape[1])

    def nbytes(self) -> int:
        """Bytes of the two arrays (what the npz file holds, bar its header)."""
        return self.probs.numel() * self.probs.element_size() + \
            self.draws.numel() * self.draws.element_size()

    def save(self, path: str | os.PathLike) -> Path:
        """Write an uncompressed npz (probs, draws, header as JSON), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, probs=self.probs.cpu().numpy(), draws=self.draws.cpu().numpy(),
                     header=np.array(json.dumps(self.header, sort_keys=True)))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, **expected) -> SoftLabelStore:
        """Read a store; keyword expectations (see `check`) are checked against its header."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                probs, draws = torch.from_numpy(z["probs"]), torch.from_numpy(z["draws"])
        except (OSError, KeyError, ValueError) as err:
            raise StoreMismatchError(f"{path}: not a readable soft-label store ({err})") from None
        if header.get("format") != STORE_FORMAT or header.get("version") != STORE_VERSION:
            raise StoreMismatchError(
                f"{path}: format {header.get('format')!r} version {header.get('version')!r}, "
                f"expected {STORE_FORMAT!r} version {STORE_VERSION}")
        n, k = header["n"], header["views"]
        if (probs.dtype != torch.float16 or tuple(probs.shape) != (n, k, NUM_CLASSES)
                or draws.dtype != torch.float32
                or tuple(draws.shape) != (n, k, header["draws_per_view"])):
            raise StoreMismatchError(
                f"{path}: arrays probs {probs.dtype} {tuple(probs.shape)}, draws {draws.dtype} "
                f"{tuple(draws.shape)} disagree with the header (n={n}, views={k})")
        store = cls(probs, draws, header)
        store.check(source=path, **expected)
        return store

    def check(self, *, cfg: TrainConfig | None = None, teachers=None, images=None,
              n: int | None = None, views: int | None = None, seed: int | None = None,
              source: str | os.PathLike | None = None) -> None:
        """Raise StoreMismatchError naming `source` and each header entry that differs.

        cfg: its augmentation fields (and the pixel normalisation) must match; teachers:
        modules or fingerprints, compared as a set (their order only changes rounding);
        images: the uint8 images (compared by sha256, which implies N); n, views, seed.
        """
        want = _expected_header(cfg, teachers, images, n, views, seed)
        have = {key: self.header.get(key) for key in want}
        if "teachers" in have and have["teachers"] is not None:
            have["teachers"] = sorted(have["teachers"])
        diffs = [_describe(key, have[key], want[key]) for key in CHECKED
                 if key in want and have[key] != want[key]]
        if diffs:
            where = "soft-label store" + (f" {source}" if source is not None else "")
            raise StoreMismatchError(f"{where} does not match: " + "; ".join(diffs)
                                     + ". It is a cache: delete it to rebuild it.")


def _expected_header(cfg, teachers, images, n, views, seed) -> dict:
    want: dict = {}
    if cfg is not None:
        want["augment"] = augment_fields(cfg)
        want["normalise"] = [PIXEL_MEAN, PIXEL_STD]
    if teachers is not None:
        want["teachers"] = sorted(t if isinstance(t, str) else teacher_fingerprint(t)
                                  for t in teachers)
    if images is not None:
        want["images"] = images_fingerprint(images)
        want["n"] = len(images)
    for key, value in (("n", n), ("views", views), ("seed", seed)):
        if value is not None:
            want[key] = value
    return want


def _describe(key: str, have, want) -> str:
    if isinstance(have, dict) and isinstance(want, dict):
        parts = [f"{key}.{k} stored {have.get(k)!r}, expected {want.get(k)!r}"
                 for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
        return "; ".join(parts)
    if key == "teachers":
        return (f"teachers differ (stored fingerprints {[h[:12] for h in have or []]}, "
                f"expected {[w[:12] for w in want]})")
    if key == "images":
        return f"images differ (sha256 stored {str(have)[:12]}..., expected {want[:12]}...)"
    return f"{key} stored {have!r}, expected {want!r}"


# ----------------------------------------------------------------------------- building
@torch.no_grad()
def build_store(teachers: list[nn.Module], images: np.ndarray | torch.Tensor, cfg: TrainConfig,
                views: int, seed: int, batch_size: int = 512,
                device: str | torch.device = "cpu", channels_last: bool = True) -> SoftLabelStore:
    """The ensemble's mean softmax on `views` seeded augmentations of each uint8 image.

    images: (N, 48, 48) uint8, in the order the trainer's rows index (the Training split).
    batch_size: views per forward pass (the flat order i * K + k, in chunks). The teachers
    are moved to `device` and run in eval mode (their train/eval mode is restored after);
    `channels_last` runs them in that layout (faster on a CPU, same math up to rounding).
    See the module docstring for the draw-order contract.
    """
    if not teachers:
        raise ValueError("a soft-label store needs at least one teacher")
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views!r}")
    images = torch.as_tensor(np.asarray(images, dtype=np.uint8))
    if images.ndim != 3 or images.shape[1:] != (48, 48):
        raise ValueError(f"images must be uint8 (N, 48, 48), got {tuple(images.shape)}")
    n, device = len(images), torch.device(device)
    u = draw_views(n, views, seed)
    header = {"format": STORE_FORMAT, "version": STORE_VERSION, "n": n, "views": views,
              "seed": seed, "draws_per_view": AUGMENT_DRAWS, "augment": augment_fields(cfg),
              "normalise": [PIXEL_MEAN, PIXEL_STD], "images": images_fingerprint(images),
              "teachers": [teacher_fingerprint(t) for t in teachers],
              "ensemble": "mean of softmax probabilities (average_logits mode='probs')",
              "built_on": device.type, "torch": torch.__version__}
    modes = [t.training for t in teachers]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models = [t.to(device).eval().to(memory_format=fmt) for t in teachers]
    start = time.perf_counter()
    try:
        probs = _ensemble_probs(models, images, u, cfg, batch_size, device, fmt)
    finally:
        for t, mode in zip(teachers, modes, strict=True):
            t.train(mode)
    header["build_seconds"] = time.perf_counter() - start  # a record, never checked
    return SoftLabelStore(probs.view(n, views, NUM_CLASSES), u, header)


def _ensemble_probs(models, images, u, cfg, batch_size, device, fmt) -> torch.Tensor:
    """float16 (N * K, 7): mean softmax of `models` on every view, in flat order."""
    n, k = u.shape[:2]
    flat_u = u.view(n * k, AUGMENT_DRAWS)
    out = torch.empty(n * k, NUM_CLASSES, dtype=torch.float16)
    for start in range(0, n * k, batch_size):
        stop = min(start + batch_size, n * k)
        image_of = torch.arange(start, stop) // k
        x = make_views(images[image_of].to(device), flat_u[start:stop].to(device), cfg)
        x = x.contiguous(memory_format=fmt)
        logits = torch.stack([m(x).float() for m in models])
        out[start:stop] = torch.softmax(logits, dim=-1).mean(dim=0).cpu().half()
    return out


def load_or_build(path: str | os.PathLike, teachers: list[nn.Module],
                  images: np.ndarray | torch.Tensor, cfg: TrainConfig, views: int, seed: int,
                  **build_args) -> SoftLabelStore:
    """The store at `path` if its header matches every argument, else an error naming
    the file and what differs; a missing file is built (`build_store`) and saved."""
    path = Path(path)
    if path.exists():
        return SoftLabelStore.load(path, cfg=cfg, teachers=teachers, images=images,
                                   views=views, seed=seed)
    store = build_store(teachers, images, cfg, views, seed, **build_args)
    store.save(path)
    return store


# ----------------------------------------------------------------------------- the teacher
class StoredViewTeacher:
    """A teacher the trainer asks for stored views: ``draws`` then ``teacher(x, rows,
    flipped, k)``. With `cfg`, refuses a config whose augmentation differs from the store's."""

    def __init__(self, store: SoftLabelStore, cfg: TrainConfig | None = None,
                 source: str | os.PathLike | None = None):
        self.store, self.source = store, source
        self.u = store.draws.float()
        self.logp = torch.log(store.probs.float().clamp_min(PROB_FLOOR))  # (N, K, 7)
        if cfg is not None:
            self.check_config(cfg)

    @property
    def views(self) -> int:
        return self.store.views

    def check_config(self, cfg: TrainConfig) -> None:
        """The trainer's augmentation must be the one the store's views were made with."""
        self.store.check(cfg=cfg, source=self.source)

    def to(self, device) -> StoredViewTeacher:
        self.u, self.logp = self.u.to(device), self.logp.to(device)
        return self

    def draws(self, rows: torch.Tensor, generator: torch.Generator,
              cfg: TrainConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One stored view per row: (u (B, AUGMENT_DRAWS), k (B,)), on the store's device.

        ``k = torch.randint(K, (B,), generator=generator)``: one draw call per epoch.
        With `cfg`, first refuses a config whose augmentation differs from the store's.
        """
        if cfg is not None:
            self.check_config(cfg)
        k = torch.randint(self.views, (len(rows),), generator=generator)
        k, rows = k.to(self.u.device), rows.to(self.u.device)
        if len(rows) and int(rows.max()) >= self.store.n:
            where = "soft-label store" + (f" {self.source}" if self.source is not None else "")
            raise IndexError(f"{where}: row {int(rows.max())} is beyond the store's "
                             f"{self.store.n} images")
        return self.u[rows, k], k

    def __call__(self, x: torch.Tensor, rows: torch.Tensor, flipped: torch.Tensor,
                 k: torch.Tensor) -> torch.Tensor:
        """(B, 7) float32 logits: log of the stored probabilities of view k of each row."""
        dev = self.logp.device
        return self.logp[rows.to(dev), k.to(dev)].to(x.device)


STORE_DESCRIPTION = "softlabel_store.json"  # in results/, by scripts/describe_softlabels.py


def describe_store(store: SoftLabelStore, clean_logits: np.ndarray | torch.Tensor,
                   labels: np.ndarray, rows: np.ndarray | None = None) -> dict:
    """How far the targets on the stored views are from the clean-image targets.

    The clean-image arm of distillation gives each view the ensemble's target for the
    clean image (for a mirrored view, the mirror image's); the stored-views arm gives
    the ensemble's target for the view itself. If the two rarely differ, the stored views
    cannot teach much the clean targets did not.

    Args:
        store: the ensemble's probabilities on K views of each Training image.
        clean_logits: (N, 2, 7), the same ensemble's logits on each Training image and
            its mirror (a run's ``train_logits.npz``).
        labels: (N,) class indices of the Training images.
        rows: indices of the images to describe (default all), e.g. the rows a student
            trains on, without the validation rows.

    Returns:
        ``images``, ``views`` (K); fractions ``clean_accuracy`` and ``view_accuracy``
        (arg-max against the label), ``argmax_changed`` (views whose arg-max is not the
        clean target's), ``total_variation`` (mean half L1 distance of the two
        distributions, 0 to 1); ``clean_entropy`` and ``view_entropy`` in nats.
    """
    clean_logits = torch.as_tensor(np.asarray(clean_logits), dtype=torch.float32)
    if tuple(clean_logits.shape) != (store.n, 2, NUM_CLASSES):
        raise ValueError(f"clean_logits has shape {tuple(clean_logits.shape)}, the store's "
                         f"{store.n} images need ({store.n}, 2, {NUM_CLASSES})")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if labels.shape != (store.n,):
        raise ValueError(f"labels has shape {tuple(labels.shape)}, the store has {store.n} images")
    rows = torch.arange(store.n) if rows is None else torch.as_tensor(np.asarray(rows))
    views = store.probs[rows].float()  # (R, K, 7)
    # The mirrored views get the mirror image's clean target, as the clean-image arm does.
    flip = mirrored(store.draws[rows], bool(store.header["augment"]["flip"]))  # (R, K)
    clean = torch.softmax(clean_logits[rows], dim=-1)  # (R, 2, 7)
    clean_per_view = torch.where(flip[..., None], clean[:, 1:2], clean[:, 0:1])  # (R, K, 7)

    def entropy(p: torch.Tensor) -> float:
        return float(-(p * torch.log(p.clamp_min(PROB_FLOOR))).sum(-1).mean())

    target = labels[rows]
    return {"images": len(rows), "views": store.views,
            "clean_accuracy": float((clean[:, 0].argmax(-1) == target).float().mean()),
            "view_accuracy": float((views.argmax(-1) == target[:, None]).float().mean()),
            "argmax_changed": float((views.argmax(-1) != clean_per_view.argmax(-1))
                                    .float().mean()),
            "total_variation": float(0.5 * (views - clean_per_view).abs().sum(-1).mean()),
            "clean_entropy": entropy(clean[:, 0]), "view_entropy": entropy(views)}


# ----------------------------------------------------------------------------- the cost
COSTS = "softlabel_costs.json"  # in results/, written by benchmarks/bench_softlabels.py


def teaching_costs(teachers: int, views: int, epochs: int, record: dict | None = None,
                   results_dir: str | os.PathLike | None = None) -> dict:
    """Seconds of CPU time to teach one student on its views, online and from a store.

    From the rates `benchmarks/bench_softlabels.py` measured in one run (``record``,
    default ``results/softlabel_costs.json``): ``student_epoch`` (training on FER2013's
    Training rows bar validation), ``online_epoch`` (the teachers labelling every one of
    those views, added to each epoch), ``online_run`` (that over `epochs`), ``store``
    (the teachers labelling `views` views of every Training image, once; the store then
    serves any number of runs), ``break_even_epochs`` (the epochs after which the store
    is cheaper), and the record's ``machine``.
    """
    from . import paths
    from .data import TRAINING_IMAGES, TRAINING_ROWS
    from .records import read_benchmark

    if record is None:
        record = read_benchmark(COSTS, results_dir)
        if record is None:
            raise FileNotFoundError(f"{Path(results_dir or paths.results_dir()) / COSTS}: no "
                                    "measured teaching costs; run "
                                    "benchmarks/bench_softlabels.py --write")
    per_view = teachers * record["teacher_seconds_per_view"]
    online_epoch = TRAINING_ROWS * per_view
    store = TRAINING_IMAGES * views * per_view
    return {"student_epoch": TRAINING_ROWS * record["student_seconds_per_image"],
            "online_epoch": online_epoch, "online_run": epochs * online_epoch,
            "store": store, "break_even_epochs": store / online_epoch,
            "machine": record.get("machine", "")}
