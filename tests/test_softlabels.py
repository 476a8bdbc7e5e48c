"""Soft-label store: views rebuilt bit for bit, the ensemble rule, the file, the teacher."""

import numpy as np
import pytest
import torch
from torch import nn

from fer_lib.augment import AUGMENT_DRAWS
from fer_lib.config import TrainConfig
from fer_lib.distill import average_logits, kd_loss
from fer_lib.models import build
from fer_lib.softlabels import (
    SoftLabelStore,
    StoredViewTeacher,
    StoreMismatchError,
    build_store,
    describe_store,
    draw_views,
    load_or_build,
    make_views,
    teacher_fingerprint,
)

CFG = TrainConfig(erase=0.5)  # every augmentation on, erasing often enough to show up
K = 4


def _teacher(seed: int) -> nn.Module:
    """A small BatchNorm net with peaked outputs and running statistics unlike a batch's,
    so that averaging logits instead of probabilities, or train-mode BatchNorm, shows."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 5, stride=3), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 15 * 15, 7))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[4].weight.mul_(6.0)
    return net


@pytest.fixture(scope="module")
def images(fer_sample):
    return torch.as_tensor(fer_sample.images[:40])


@pytest.fixture(scope="module")
def teachers():
    return [_teacher(0), _teacher(1)]


@pytest.fixture(scope="module")
def store(teachers, images):
    return build_store(teachers, images, CFG, views=K, seed=7, batch_size=24)


def _rebuilt_views(store, images, rows, k):
    """Views rebuilt the way the trainer will: stored draws, shuffled batch of rows."""
    return make_views(images[rows], store.draws[rows, k], CFG)


def test_views_rebuilt_from_stored_draws_are_bit_identical(images):
    teacher, seen = _teacher(2), []
    teacher.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    store = build_store([teacher], images, CFG, views=K, seed=7, batch_size=24)
    n = len(images)
    built = torch.cat(seen).view(n, K, 1, 48, 48)  # exactly what the teacher was shown
    # rebuilt as the trainer will: shuffled rows, one stored view each, another batching
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    k = torch.randint(K, (n,), generator=torch.Generator().manual_seed(1))
    rebuilt = torch.cat([_rebuilt_views(store, images, rows[s:s + 16], k[s:s + 16])
                         for s in range(0, n, 16)])
    assert torch.equal(rebuilt, built[rows, k])
    assert not torch.equal(built[:, 0], built[:, 1])  # the K views do differ


def test_draws_follow_the_documented_order(store, images):
    expected = torch.rand((len(images), K, AUGMENT_DRAWS),
                          generator=torch.Generator().manual_seed(7))
    assert store.draws.dtype == torch.float32
    assert torch.equal(store.draws, expected)
    assert torch.equal(draw_views(10, K, 7), store.draws[:10])  # a smaller store is a prefix


def test_store_is_the_mean_of_the_teachers_probabilities(store, teachers, images):
    rows = torch.arange(len(images)).repeat_interleave(K)
    k = torch.arange(K).repeat(len(images))
    views = _rebuilt_views(store, images, rows, k)
    for t in teachers:
        t.eval()
    logits = torch.stack([t(views) for t in teachers]).detach()
    expected = torch.exp(average_logits(logits, mode="probs")).view(len(images), K, 7)
    assert store.probs.dtype == torch.float16 and store.probs.shape == (len(images), K, 7)
    # float16 keeps 11 significant bits: half an ulp of a probability p is <= 2^-11 p
    torch.testing.assert_close(store.probs.float(), expected, rtol=2**-10, atol=1e-7)
    # the check has teeth: averaged logits and a single teacher lie well outside it
    mean_logits = torch.softmax(logits.mean(dim=0), dim=-1).view_as(expected)
    assert (mean_logits - expected).abs().max() > 1e-2
    assert (torch.softmax(logits[0], -1).view_as(expected) - expected).abs().max() > 1e-2


def test_teachers_run_in_eval_mode_and_keep_their_mode(images):
    teacher = _teacher(3).train()
    store = build_store([teacher], images[:6], CFG, views=2, seed=0)
    assert teacher.training
    views = make_views(images[:6].repeat_interleave(2, 0), store.draws.view(12, -1), CFG)
    with torch.no_grad():
        eval_probs = torch.softmax(teacher.eval()(views), -1).view(6, 2, 7)
    torch.testing.assert_close(store.probs.float(), eval_probs, rtol=2**-10, atol=1e-7)


def test_store_of_mobilenet_teacher_matches_batching(images):
    teacher = build("mobilenet_v2", width=0.1)
    small = build_store([teacher], images[:8], CFG, views=3, seed=5, batch_size=24)
    split = build_store([teacher], images[:8], CFG, views=3, seed=5, batch_size=5,
                        channels_last=False)
    assert torch.equal(small.draws, split.draws)
    torch.testing.assert_close(small.probs.float(), split.probs.float(), rtol=2**-10, atol=1e-6)


def test_save_load_round_trip(store, teachers, images, tmp_path):
    path = store.save(tmp_path / "soft.npz")
    back = SoftLabelStore.load(path, cfg=CFG, teachers=teachers[::-1], images=images,
                               views=K, seed=7)
    assert torch.equal(back.probs, store.probs) and torch.equal(back.draws, store.draws)
    assert back.header == store.header
    assert back.header["n"] == len(images) and back.header["seed"] == 7
    assert back.header["teachers"] == [teacher_fingerprint(t) for t in teachers]


@pytest.mark.parametrize("change, words", [
    (dict(cfg=TrainConfig(erase=0.5, rotate=15.0)), ["augment.rotate", "10.0", "15.0"]),
    (dict(n=39), ["n stored 40", "expected 39"]),
    (dict(views=8), ["views stored 4", "expected 8"]),
    (dict(teachers="other"), ["teachers differ"]),
    (dict(images="shifted"), ["images differ", "n stored 40, expected 39"]),
])
def test_header_mismatch_names_the_file_and_what_differs(store, teachers, images, tmp_path,
                                                         change, words):
    path = store.save(tmp_path / "soft.npz")
    if change.get("teachers") == "other":
        other = _teacher(1)
        with torch.no_grad():
            other[4].bias[0] += 1e-3
        change = dict(teachers=[teachers[0], other])
    if change.get("images") == "shifted":
        change = dict(images=images[1:])
    with pytest.raises(StoreMismatchError) as err:
        SoftLabelStore.load(path, **change)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_load_refuses_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, probs=np.zeros((2, 1, 7), np.float32))
    with pytest.raises(StoreMismatchError, match="bad.npz"):
        SoftLabelStore.load(path)


def test_load_or_build_builds_once_then_checks(teachers, images, tmp_path):
    path = tmp_path / "cache" / "soft.npz"
    first = load_or_build(path, teachers, images[:5], CFG, views=2, seed=1)
    again = load_or_build(path, teachers, images[:5], CFG, views=2, seed=1)
    assert torch.equal(first.probs, again.probs)
    with pytest.raises(StoreMismatchError, match="seed stored 1, expected 2"):
        load_or_build(path, teachers, images[:5], CFG, views=2, seed=2)


def test_stored_view_teacher_feeds_kd_loss(store):
    teacher = StoredViewTeacher(store, cfg=TrainConfig(erase=0.5, lr=0.1))
    rows = torch.tensor([3, 0, 17, 3])
    u, k = teacher.draws(rows, torch.Generator().manual_seed(0))
    assert u.shape == (4, AUGMENT_DRAWS) and torch.equal(u, store.draws[rows, k])
    x = torch.zeros(4, 1, 48, 48)
    logits = teacher(x, rows, u[:, 2] < 0.5, k)
    assert logits.shape == (4, 7) and logits.dtype == torch.float32
    torch.testing.assert_close(torch.softmax(logits, -1), store.probs[rows, k].float(),
                               rtol=2**-9, atol=1e-6)
    y = torch.tensor([0, 1, 2, 3])
    assert kd_loss(logits.clone(), logits, y, alpha=1.0).item() == pytest.approx(0, abs=1e-6)
    student = torch.randn(4, 7, requires_grad=True)
    loss = kd_loss(student, logits, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_probabilities_rounded_to_zero_give_finite_loss(store):
    zeroed = SoftLabelStore(store.probs.clone(), store.draws, store.header)
    zeroed.probs[0, 0] = torch.tensor([1, 0, 0, 0, 0, 0, 0], dtype=torch.float16)
    teacher = StoredViewTeacher(zeroed)
    logits = teacher(torch.zeros(1, 1, 48, 48), torch.tensor([0]), torch.tensor([False]),
                     torch.tensor([0]))
    student = torch.randn(1, 7, requires_grad=True)
    loss = kd_loss(student, logits, torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_view_choice_is_reproducible_from_a_seed(store):
    teacher = StoredViewTeacher(store)
    rows = torch.randperm(len(store.probs))
    u1, k1 = teacher.draws(rows, torch.Generator().manual_seed(11))
    u2, k2 = teacher.draws(rows, torch.Generator().manual_seed(11))
    _, k3 = teacher.draws(rows, torch.Generator().manual_seed(12))
    assert torch.equal(k1, k2) and torch.equal(u1, u2)
    assert not torch.equal(k1, k3)
    assert set(k1.tolist()) == set(range(K))  # every stored view is in use


def test_stored_view_teacher_refuses_other_augmentation_and_rows(store):
    with pytest.raises(StoreMismatchError, match="augment.shift stored 4.0, expected 2.0"):
        StoredViewTeacher(store, cfg=TrainConfig(erase=0.5, shift=2.0), source="soft.npz")
    with pytest.raises(IndexError, match="beyond the store's 40 images"):
        StoredViewTeacher(store).draws(torch.tensor([40]), torch.Generator())


def test_teaching_costs_follow_from_the_two_measured_rates():
    """Online teaching pays the teachers on every training view of every epoch; a store
    pays them on K views of every Training image once."""
    from fer_lib.data import VAL_FRACTION
    from fer_lib.plan import TRAINING_IMAGES
    from fer_lib.softlabels import teaching_costs

    record = {"teacher_seconds_per_view": 0.002, "student_seconds_per_image": 0.001}
    cost = teaching_costs(teachers=3, views=8, epochs=50, record=record)
    rows = TRAINING_IMAGES * (1 - VAL_FRACTION)
    assert cost["online_epoch"] == pytest.approx(3 * 0.002 * rows)
    assert cost["online_epoch"] / cost["student_epoch"] == pytest.approx(6)
    assert cost["online_run"] == pytest.approx(50 * cost["online_epoch"])
    assert cost["store"] == pytest.approx(8 * 3 * 0.002 * TRAINING_IMAGES)
    assert cost["break_even_epochs"] == pytest.approx(8 / (1 - VAL_FRACTION))
    assert teaching_costs(3, 16, 50, record)["store"] == pytest.approx(2 * cost["store"])


def test_teaching_costs_name_the_missing_measurement(tmp_path):
    from fer_lib.softlabels import teaching_costs

    with pytest.raises(FileNotFoundError, match="bench_softlabels.py"):
        teaching_costs(3, 8, 50, results_dir=tmp_path)


# ------------------------------------------------ the views' targets against the clean ones
def _described_store(n=30, views=K, seed=0):
    """A store whose every view holds exactly the clean-image target of its image (the
    mirror image's for a mirrored view), with the clean logits it was made from."""
    gen = torch.Generator().manual_seed(seed)
    clean_logits = 3 * torch.randn((n, 2, 7), generator=gen)  # original and mirror differ
    draws = torch.rand((n, views, AUGMENT_DRAWS), generator=gen)
    flip = draws[..., 2] < 0.5
    clean = torch.softmax(clean_logits, dim=-1)
    probs = torch.where(flip[..., None], clean[:, 1:2], clean[:, 0:1]).half()
    store = SoftLabelStore(probs, draws, {"augment": {"flip": True}})
    labels = torch.randint(7, (n,), generator=gen).numpy()
    return store, clean_logits.numpy(), labels


def test_views_that_repeat_the_clean_targets_are_described_as_unchanged():
    store, clean_logits, labels = _described_store()
    d = describe_store(store, clean_logits, labels)
    assert d["argmax_changed"] == 0
    assert d["total_variation"] < 1e-3  # float16 rounding of the stored probabilities
    assert d["images"] == 30 and d["views"] == K
    assert abs(d["view_entropy"] - d["clean_entropy"]) < 0.5  # mirror targets differ a bit


def test_a_mirrored_view_is_compared_with_the_mirror_images_target():
    store, clean_logits, labels = _described_store()
    store.header["augment"]["flip"] = False  # now every view should carry the original's
    d = describe_store(store, clean_logits, labels)
    assert d["argmax_changed"] > 0 and d["total_variation"] > 0.05


def test_changed_views_are_counted_and_accuracies_follow_the_labels():
    store, clean_logits, labels = _described_store(n=20)
    clean_top = torch.softmax(torch.as_tensor(clean_logits), -1).argmax(-1)  # (20, 2)
    flip = store.draws[..., 2] < 0.5
    top = torch.where(flip, clean_top[:, 1:2], clean_top[:, 0:1])  # (20, K)
    # Views 0 of the first 5 images: all mass on another class than the clean target's.
    other = (top[:5, 0] + 1) % 7
    store.probs[:5, 0] = torch.nn.functional.one_hot(other, 7).half()
    d = describe_store(store, clean_logits, labels)
    assert d["argmax_changed"] == pytest.approx(5 / (20 * K))
    assert d["clean_accuracy"] == pytest.approx(float((clean_top[:, 0].numpy() == labels).mean()))
    views_top = store.probs.float().argmax(-1).numpy()
    assert d["view_accuracy"] == pytest.approx(float((views_top == labels[:, None]).mean()))
    # Restricted to the untouched rows, nothing changed.
    assert describe_store(store, clean_logits, labels, rows=np.arange(5, 20))["argmax_changed"] == 0


def test_describe_store_names_a_misshapen_input():
    store, clean_logits, labels = _described_store(n=10)
    with pytest.raises(ValueError, match=r"clean_logits has shape \(9, 2, 7\)"):
        describe_store(store, clean_logits[:9], labels)
    with pytest.raises(ValueError, match=r"labels has shape \(11,\)"):
        describe_store(store, clean_logits, np.zeros(11, dtype=np.int64))
