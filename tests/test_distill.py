"""Distillation loss and teachers: hand-computed values, invariants and errors."""

import numpy as np
import pytest
import torch
from torch import nn

from fer_lib.distill import CachedTeacher, EnsembleTeacher, average_logits, kd_loss
from fer_lib.formatting import number_word


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _smoothed_targets(y: np.ndarray, smoothing: float, k: int = 7) -> np.ndarray:
    """Label smoothing: 1 - eps on the label, eps spread evenly over all k classes."""
    return (1 - smoothing) * np.eye(k)[y] + smoothing / k


def _kd_by_hand(s: np.ndarray, t: np.ndarray, y: np.ndarray, T: float, alpha: float,
                smoothing: float = 0.0) -> float:
    log_p_s, log_p_t = _log_softmax(s / T), _log_softmax(t / T)
    kl = (np.exp(log_p_t) * (log_p_t - log_p_s)).sum(axis=1).mean()
    ce = -(_smoothed_targets(y, smoothing) * _log_softmax(s)).sum(axis=1).mean()
    return alpha * T**2 * kl + (1 - alpha) * ce


def _kd_gradient_by_hand(s: np.ndarray, t: np.ndarray, y: np.ndarray, T: float, alpha: float,
                         smoothing: float) -> np.ndarray:
    """d loss / d student logits: alpha T (p_s^T - p_t^T) / B + (1 - alpha) (p_s - q) / B."""
    soft = np.exp(_log_softmax(s / T)) - np.exp(_log_softmax(t / T))
    hard = np.exp(_log_softmax(s)) - _smoothed_targets(y, smoothing)
    return (alpha * T * soft + (1 - alpha) * hard) / len(y)


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(3, 7)) * 2, rng.normal(size=(3, 7)) * 2,
            np.array([0, 4, 6]))


def test_kd_loss_is_zero_for_identical_logits_with_alpha_one(logits):
    s, _, y = logits
    s = torch.tensor(s)
    assert kd_loss(s, s.clone(), torch.tensor(y), alpha=1.0).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (4.0, 0.9), (2.0, 0.0), (8.0, 1.0)])
def test_kd_loss_matches_a_hand_computation(logits, T, alpha):
    s, t, y = logits
    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(_kd_by_hand(s, t, y, T, alpha), rel=1e-5)


@pytest.mark.parametrize("T, alpha, smoothing", [(4.0, 0.9, 0.1), (2.0, 0.5, 0.2),
                                                (1.0, 0.0, 0.1), (3.0, 1.0, 0.3)])
def test_kd_loss_value_and_gradient_with_label_smoothing(logits, T, alpha, smoothing):
    s, t, y = logits
    student = torch.tensor(s, requires_grad=True)
    loss = kd_loss(student, torch.tensor(t), torch.tensor(y), temperature=T, alpha=alpha,
                   label_smoothing=smoothing)
    assert loss.item() == pytest.approx(_kd_by_hand(s, t, y, T, alpha, smoothing), rel=1e-5)
    loss.backward()
    np.testing.assert_allclose(student.grad.numpy(),
                               _kd_gradient_by_hand(s, t, y, T, alpha, smoothing),
                               rtol=1e-4, atol=1e-6)


def test_kd_loss_soft_term_scales_with_temperature_squared(logits):
    s, t, y = (torch.tensor(a) for a in logits)
    # Same softened distributions at two temperatures: the soft term differs by T^2 alone.
    low = kd_loss(s, t, y, temperature=1.0, alpha=1.0)
    high = kd_loss(s * 3, t * 3, y, temperature=3.0, alpha=1.0)
    assert high.item() == pytest.approx(9 * low.item(), rel=1e-5)


def test_kd_loss_does_not_train_the_teacher(logits):
    s, t, y = logits
    t = torch.tensor(t, requires_grad=True)
    kd_loss(torch.tensor(s, requires_grad=True), t, torch.tensor(y)).backward()
    assert t.grad is None


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"temperature": -1.0},
                                    {"alpha": -0.1}, {"alpha": 1.5}])
def test_kd_loss_rejects_bad_arguments(logits, kwargs):
    s, t, y = (torch.tensor(a) for a in logits)
    with pytest.raises(ValueError):
        kd_loss(s, t, y, **kwargs)


def test_kd_loss_rejects_mismatched_shapes(logits):
    s, t, y = (torch.tensor(a) for a in logits)
    with pytest.raises(ValueError, match="shape"):
        kd_loss(s, t.unsqueeze(1).expand(3, 2, 7), y)


def test_average_logits_in_both_modes():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(average_logits(z, mode="logits"), z.mean(axis=0), rtol=1e-6)
    probs = np.exp(_log_softmax(z.reshape(-1, 7))).reshape(z.shape).mean(axis=0)
    out = average_logits(torch.tensor(z), mode="probs")
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(torch.softmax(out, dim=-1).numpy(), probs, rtol=1e-5)
    np.testing.assert_allclose(out.exp().sum(-1).numpy(), 1.0, rtol=1e-5)  # log-probabilities
    with pytest.raises(ValueError, match="mode"):
        average_logits(z, mode="median")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 7)).eval()


def test_ensemble_of_one_is_the_model_and_stays_in_eval_mode():
    net = _net()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        expected = net(x)
    teacher = EnsembleTeacher([net], mode="logits").train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    torch.testing.assert_close(teacher(x), expected)
    probs_teacher = EnsembleTeacher([net])  # log of the mean softmax of one = log-softmax
    torch.testing.assert_close(probs_teacher(x), torch.log_softmax(expected, dim=1))
    assert not any(p.requires_grad for p in teacher.parameters())


def test_ensemble_rejects_no_models_and_bad_mode():
    with pytest.raises(ValueError):
        EnsembleTeacher([])
    with pytest.raises(ValueError, match="mode"):
        EnsembleTeacher([_net()], mode="vote")


def test_cached_teacher_picks_plain_or_mirrored_rows():
    cache = np.arange(5 * 2 * 7, dtype=np.float32).reshape(5, 2, 7)
    teacher = CachedTeacher(cache)
    index = torch.tensor([4, 0, 2])
    flipped = torch.tensor([True, False, True])
    out = teacher(torch.zeros(3, 1, 48, 48), index, flipped)
    np.testing.assert_array_equal(out.numpy(), cache[[4, 0, 2], [1, 0, 1]])


@pytest.mark.parametrize("shape", [(5, 7), (5, 3, 7), (5, 2, 6)])
def test_cached_teacher_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="N, 2, 7"):
        CachedTeacher(np.zeros(shape, np.float32))


def _one_hot_logits(predictions, scale=5.0) -> np.ndarray:
    """(N, 7) logits whose arg-max is `predictions`, `scale` (a number or (N,)) above 0."""
    out = np.zeros((len(predictions), 7), dtype=np.float32)
    out[np.arange(len(predictions)), predictions] = scale
    return out


def test_choose_members_adds_while_validation_rises_and_stops():
    from fer_lib.distill import choose_members

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=300)
    wrong, rows = (labels + 1) % 7, np.arange(300)
    # a is right on rows 0-199, b on rows 100-299, each sure when right and unsure when
    # wrong; c is always wrong. Alone a and b score 2/3; together, all 300.
    a = _one_hot_logits(np.where(rows < 200, labels, wrong), np.where(rows < 200, 5.0, 1.0))
    b = _one_hot_logits(np.where(rows >= 100, labels, wrong), np.where(rows >= 100, 5.0, 1.0))
    c = _one_hot_logits(wrong)
    path = choose_members({"c": c, "b": b, "a": a}, labels)
    # b and a tie alone: b comes first among the candidates; c never helps.
    assert [m for m, _ in path] == ["b", "a"]
    assert [acc for _, acc in path] == pytest.approx([2 / 3, 1.0])


def test_choose_members_never_takes_a_member_that_does_not_help():
    from fer_lib.distill import choose_members

    labels = np.arange(70) % 7
    good = _one_hot_logits(labels)
    path = choose_members({"good": good, "copy": good.copy()}, labels)
    assert path == [("good", 1.0)]


def test_choose_members_rejects_bad_input_by_name():
    from fer_lib.distill import choose_members

    with pytest.raises(ValueError, match="at least one candidate"):
        choose_members({}, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="candidate 'short'.*expected \\(3, 7\\)"):
        choose_members({"short": np.zeros((2, 7))}, np.zeros(3, dtype=int))


def test_a_teacher_is_described_by_its_families_and_the_members_it_kept():
    from collections import Counter

    from fer_lib import catalogue
    from fer_lib.distill_study import describe_teacher
    from fer_lib.experiments import ensemble_members
    from fer_lib.models import FAMILIES
    from fer_lib.store import MissingResultError

    one_family = catalogue.get("teacher-ensemble")
    title = FAMILIES[catalogue.get(one_family.members[0]).train.family].title
    assert describe_teacher("teacher-ensemble") == (
        f"the ensemble of {number_word(len(one_family.members))} {title} teachers")
    single = catalogue.get("teacher-cpu-resnet-s0")
    assert describe_teacher(single.name) == (
        f"the {FAMILIES[single.train.family].title} teacher {single.name}")
    try:  # an ensemble that chooses on validation: the members its stored result kept
        kept = ensemble_members(catalogue.get("teacher-cpu-ensemble"))
    except MissingResultError:
        kept = catalogue.get("teacher-cpu-ensemble").members
    text = describe_teacher("teacher-cpu-ensemble")
    assert text.startswith(f"the ensemble of {number_word(len(kept))} ")
    for family, n in Counter(catalogue.get(m).train.family for m in kept).items():
        assert f"{number_word(n)} {FAMILIES[family].title}" in text
    assert "shifts" not in text
    shifted = catalogue.get(catalogue.CPU_SHIFTED_ENSEMBLE)
    assert describe_teacher(shifted.name).endswith(
        f", each scoring a face and its four {shifted.view_shift}-pixel shifts")


def test_how_a_run_learned_is_said_from_its_teacher_and_its_views():
    from fer_lib.catalogue import views_name
    from fer_lib.distill_study import describe_teacher, describe_teaching

    assert describe_teaching(views_name("labels", 0)) == "trained on the labels only"
    teacher = describe_teacher("teacher-cpu-ensemble")
    assert describe_teaching(views_name("logits", 0)) == f"distilled from {teacher}"
    assert describe_teaching(views_name("views", 0)) == (
        f"distilled from {teacher} on the views it trains on")


# ----------------------------------------------------------------------------- imitation
def _random_logits(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 7)).astype(np.float32)


def test_imitation_splits_accuracy_into_the_teachers_right_and_wrong_images():
    from fer_lib.distill_study import imitation

    s, t = _random_logits(500, 0), _random_logits(500, 1)
    y = np.random.default_rng(2).integers(0, 7, 500)
    m = imitation(s, t, y)
    t_right = t.argmax(1) == y
    assert m["teacher_accuracy"] == pytest.approx(t_right.mean())
    assert m["accuracy"] == pytest.approx((s.argmax(1) == y).mean())
    recombined = (m["teacher_accuracy"] * m["right_where_teacher_right"]
                  + (1 - m["teacher_accuracy"]) * m["right_where_teacher_wrong"])
    assert recombined == pytest.approx(m["accuracy"])
    assert m["agreement"] == pytest.approx((s.argmax(1) == t.argmax(1)).mean())
    by_hand = (np.exp(_log_softmax(t)) * (_log_softmax(t) - _log_softmax(s))).sum(1).mean()
    assert m["kl"] == pytest.approx(by_hand, rel=1e-5)
    assert m["images"] == 500


def test_a_student_equal_to_its_teacher_copies_every_mistake():
    from fer_lib.distill_study import imitation

    t = _random_logits(300, 3)
    y = np.random.default_rng(4).integers(0, 7, 300)
    m = imitation(t.copy(), t, y)
    assert m["agreement"] == 1.0 and m["agrees_where_teacher_wrong"] == 1.0
    assert m["right_where_teacher_right"] == 1.0 and m["right_where_teacher_wrong"] == 0.0
    assert m["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("change, message", [
    (lambda s, t, y: (s[:, :6], t, y), "logits"),
    (lambda s, t, y: (s, t, y[:-1]), "labels"),
    (lambda s, t, y: (np.where(s > 1, np.inf, s), t, y), "inf or NaN"),
    (lambda s, t, y: (s, t, t.argmax(1)), "right on all"),
])
def test_imitation_refuses_what_it_cannot_split(change, message):
    from fer_lib.distill_study import imitation

    s, t = _random_logits(50, 5), _random_logits(50, 6)
    y = np.random.default_rng(7).integers(0, 7, 50)
    with pytest.raises(ValueError, match=message):
        imitation(*change(s, t, y))


def test_imitation_study_compares_each_part_over_seeds_and_waits_for_every_run(tmp_path):
    """From a written record: the parts sum to the accuracy, each distilled arm is tested
    against labels only over its seeds, and one family of tests is Holm-corrected."""
    import json

    from fer_lib.catalogue import VIEWS_ARM_LABELS, views_groups
    from fer_lib.distill_study import IMITATION_DESCRIPTION, IMITATION_PARTS, imitation_study
    from fer_lib.stats import holm, welch

    groups = views_groups()
    rng = np.random.default_rng(0)

    def measures(right_right: float) -> dict:
        right_wrong = 0.15 + rng.normal(0, 0.01)
        return {"accuracy": 0.7 * right_right + 0.3 * right_wrong, "teacher_accuracy": 0.7,
                "agreement": 0.8, "right_where_teacher_right": right_right,
                "right_where_teacher_wrong": right_wrong, "agrees_where_teacher_wrong": 0.6,
                "kl": 0.2, "images": 100}

    runs = {}
    for arm, names in groups.items():
        for name in names:
            rr = 0.83 + (0.02 if arm != VIEWS_ARM_LABELS["labels"] else 0) + rng.normal(0, 0.003)
            runs[name] = {"train": measures(rr), "val": measures(rr)}
    record = {"teacher": "t", "runs": {**runs, "long-run": {"train": measures(0.9),
                                                            "val": measures(0.9)}}}
    (tmp_path / IMITATION_DESCRIPTION).write_text(json.dumps(record))
    study = imitation_study(tmp_path)
    assert list(study.others) == ["long-run"]  # outside the study: kept, not compared
    assert "long-run" not in study.comparison.accuracies
    labels = VIEWS_ARM_LABELS["labels"]
    assert study.distilled == [a for a in groups if a != labels]
    for name, m in runs.items():
        parts = [study.comparison.accuracies[name][p] for p in IMITATION_PARTS]
        assert sum(parts) == pytest.approx(m["val"]["accuracy"])
    arm = study.distilled[0]
    part = [0.7 * runs[n]["val"]["right_where_teacher_right"] for n in groups[arm]]
    base = [0.7 * runs[n]["val"]["right_where_teacher_right"] for n in groups[labels]]
    assert study.comparison.tests[(arm, "part right")]["p"] == pytest.approx(welch(part, base)["p"])
    family = [(a, p) for a in study.distilled for p in IMITATION_PARTS]
    raw = [study.comparison.tests[k]["p"] for k in family]
    assert [study.adjusted[k] for k in family] == pytest.approx(list(holm(raw)))
    del record["runs"][groups[arm][0]]
    (tmp_path / IMITATION_DESCRIPTION).write_text(json.dumps(record))
    assert imitation_study(tmp_path) is None
    assert imitation_study(tmp_path / "nowhere") is None


def test_the_quoted_teacher_is_the_newest_stored_ensemble_then_validation_decides(tmp_path):
    """The book quotes the first, smoothed ensemble until a kept-teacher ensemble is stored,
    then the one chosen among the most candidates; of the two final ones (flip views and
    shifted views) the one with the higher validation accuracy, the first on a tie."""
    import json

    from fer_lib import catalogue
    from fer_lib.distill_study import quoted_teacher

    def store(name: str, val_acc: float) -> None:
        exp = catalogue.get(name)
        folder = tmp_path / exp.folder
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"experiment": exp.to_dict(),
                                                        "hash": exp.key}))
        (folder / "metrics.json").write_text(json.dumps({"val_acc": val_acc}))
        (folder / "history.csv").write_text("epoch\n")

    assert quoted_teacher(tmp_path) == catalogue.ENSEMBLE
    store(catalogue.CPU_ENSEMBLE, 0.70)
    assert quoted_teacher(tmp_path) == catalogue.CPU_ENSEMBLE
    store(catalogue.CPU_SHIFTED_ENSEMBLE, 0.69)
    assert quoted_teacher(tmp_path) == catalogue.CPU_SHIFTED_ENSEMBLE
    store(catalogue.CPU_FINAL_ENSEMBLE, 0.70)
    assert quoted_teacher(tmp_path) == catalogue.CPU_FINAL_ENSEMBLE
    store(catalogue.CPU_SHIFTED_ENSEMBLE, 0.70)  # a tie: the first, scored as stored
    assert quoted_teacher(tmp_path) == catalogue.CPU_FINAL_ENSEMBLE
    store(catalogue.CPU_SHIFTED_ENSEMBLE, 0.71)
    assert quoted_teacher(tmp_path) == catalogue.CPU_SHIFTED_ENSEMBLE
    assert set(catalogue.get(catalogue.CPU_FINAL_ENSEMBLE).members) > set(
        catalogue.get(catalogue.CPU_ENSEMBLE).members)
    assert catalogue.get(catalogue.CPU_SHIFTED_ENSEMBLE).members == catalogue.get(
        catalogue.CPU_FINAL_ENSEMBLE).members
