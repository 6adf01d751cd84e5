"""Teachers: the noise matrix h, specs and keys, data-level subsets, SoftRec's training counts."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import csrec.methods.teachers as teachers_module
from csrec.data import SequenceData
from csrec.methods import build_method_store, teacher_specs, train_teacher
from csrec.methods.losses import popularity_logits
from csrec.methods.teachers import NoiseMatrix, TeacherSpec
from csrec.training import TrainConfig


# --- NoiseMatrix (Eq. 11, max_k h̃_{k,j} of Eq. 16) ---------------------------------------------
def _noise(n=37, dim=5, seed=0, **kw) -> NoiseMatrix:
    torch.manual_seed(seed)
    return NoiseMatrix(n, dim, **kw).double()


def _brute_column_max(noise: NoiseMatrix) -> tuple[list[float], list[int]]:
    full = (noise.observed @ noise.preferred.t()).detach()
    n = full.shape[0]
    values, rows = [], []
    for j in range(n):
        best, arg = -math.inf, -1
        for k in range(n):
            if float(full[k, j]) > best:
                best, arg = float(full[k, j]), k
        values.append(best)
        rows.append(arg)
    return values, rows


def test_noise_rows_are_rows_of_the_full_matrix():
    noise = _noise()
    items = torch.tensor([0, 36, 5, 5])
    full = noise.observed @ noise.preferred.t()
    torch.testing.assert_close(noise.rows(items), full[items], rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 36, 37 * 5, 37 * 36, 1 << 22])
def test_column_argmax_matches_brute_force_with_any_chunking(chunk):
    noise = _noise()
    values, rows = _brute_column_max(noise)
    assert noise.column_argmax(chunk=chunk).tolist() == rows
    full = (noise.observed @ noise.preferred.t()).detach()
    got = full[noise.column_argmax(chunk=chunk), torch.arange(37)]
    torch.testing.assert_close(got, torch.tensor(values, dtype=torch.float64), rtol=0, atol=0)


def test_column_max_value_and_gradient():
    noise = _noise()
    values, rows = _brute_column_max(noise)
    column_max = noise.column_max()
    torch.testing.assert_close(column_max, torch.tensor(values, dtype=torch.float64), rtol=0, atol=1e-12)
    weights = torch.linspace(0.5, 2.0, 37, dtype=torch.float64)
    (column_max * weights).sum().backward()
    # d/dM_k Σ_j w_j max_k' h̃_{k',j} = Σ_{j: argmax_j = k} w_j N_j;  d/dN_j = w_j M_{argmax_j}.
    want_obs = torch.zeros_like(noise.observed)
    want_pref = torch.zeros_like(noise.preferred)
    for j, k in enumerate(rows):
        want_obs[k] += weights[j] * noise.preferred.detach()[j]
        want_pref[j] = weights[j] * noise.observed.detach()[k]
    torch.testing.assert_close(noise.observed.grad, want_obs, rtol=0, atol=1e-12)
    torch.testing.assert_close(noise.preferred.grad, want_pref, rtol=0, atol=1e-12)
    assert noise.observed.grad.abs().sum() > 0 and noise.preferred.grad.abs().sum() > 0


def test_column_max_tracks_parameter_updates_when_exact():
    noise = _noise(n=11, dim=3)
    noise.column_max()
    with torch.no_grad():
        noise.observed[3] += 50.0 * noise.preferred.sum(0).sign()  # row 3 now dominates many columns
    torch.testing.assert_close(noise.column_max(), torch.tensor(_brute_column_max(noise)[0], dtype=torch.float64))


def test_column_max_refreshes_argmax_every_k_steps_when_large():
    noise = _noise(n=11, dim=3, exact_limit=0, refresh_every=3)
    first = noise.column_max()  # step 0: refresh
    with torch.no_grad():
        noise.observed.mul_(-1.0)  # every column's arg-max row changes
    stale = noise.column_max()  # step 1: same arg-max rows, new values
    new_rows = _brute_column_max(noise)[1]
    noise.column_max()  # step 2
    fresh = noise.column_max()  # step 3: refreshed, exact again
    torch.testing.assert_close(stale, -first)
    torch.testing.assert_close(fresh, torch.tensor(_brute_column_max(noise)[0], dtype=torch.float64))
    assert noise._argmax.tolist() == new_rows


def test_stale_column_max_is_floored_by_the_batch_rows_so_eq16_keeps_its_bound():
    """Between refreshes the stale arg-max rows can score below this batch's own rows; the column
    max is then the larger of the two, so max_k h̃_kj ≥ h̃_ij for every batch row i, Eq. 16's inner
    term stays ≥ log|I|, and the value never exceeds the true column max."""
    from csrec.methods.losses import relaxed_expectation

    n = 11
    noise = _noise(n=n, dim=3, exact_limit=0, refresh_every=5)
    noise.column_max()  # step 0: refresh
    with torch.no_grad():
        noise.observed.mul_(-1.0)  # every column's arg-max row changes
    items = torch.tensor([0, 4, 7])
    h_rows = noise.rows(items)
    stale_only = (noise.observed[noise._argmax] * noise.preferred).sum(-1).detach()
    assert (stale_only.unsqueeze(0) < h_rows.detach()).any()  # without the floor the bound would break
    floored = noise.column_max(h_rows)  # step 1: stale arg-max rows
    torch.testing.assert_close(floored, torch.maximum(stale_only, h_rows.detach().amax(0)))
    assert (floored.unsqueeze(0) >= h_rows).all()
    assert (floored <= torch.tensor(_brute_column_max(noise)[0], dtype=torch.float64) + 1e-12).all()
    probs = torch.softmax(torch.randn(3, n, dtype=torch.float64), dim=-1)
    assert float(relaxed_expectation(probs, h_rows, floored, n)) >= math.log(n)
    # The gradient reaches the batch's rows where they set the max.
    floored.sum().backward()
    assert noise.observed.grad[items].abs().sum() > 0


def test_robust_teacher_keys_changed_with_the_floor():
    """Robust teachers trained before the floor (keys without it) are not reused; others keep their keys."""
    plain = TeacherSpec(backbone="gru4rec", model=(), seed=1)
    robust = TeacherSpec(backbone="gru4rec", model=(), seed=2, robust=True, alpha=0.5, side=plain)
    assert robust.to_dict()["column_max_floor"] == "batch"
    assert "column_max_floor" not in plain.to_dict() and "noise_column_max" not in plain.to_dict()
    running = dataclasses.replace(robust, noise_column_max="running")
    assert "column_max_floor" not in running.to_dict()


# --- teacher_specs -----------------------------------------------------------------------------
def test_specs_csrec_m(method_config):
    config = method_config("csrec-m", num_teachers=3, teacher_seed=70)
    specs = teacher_specs(config)
    assert [s.seed for s in specs] == [70, 71, 72]
    model = tuple(sorted(dataclasses.asdict(config.resolved_model()).items()))
    for s in specs:
        assert s.subsample is None and s.subsample_seed is None and not s.robust and s.side is None
        assert s.backbone == "gru4rec" and s.model == model


def test_specs_csrec_d(method_config):
    config = method_config("csrec-d", num_teachers=3, subsample=0.6, teacher_seed=5, subsample_seed=40)
    specs = teacher_specs(config)
    assert [s.seed for s in specs] == [5, 5, 5]  # one model seed, as the authors
    assert [s.subsample for s in specs] == [0.6, 0.6, 0.6]
    assert [s.subsample_seed for s in specs] == [40, 41, 42]
    assert not any(s.robust for s in specs)


@pytest.mark.parametrize("expectation_term", [True, False])
def test_specs_csrec_t_side_is_csrec_d_first_teacher(data, expectation_term, method_config):
    kw = dict(subsample=0.7, teacher_seed=9, subsample_seed=30)
    t_config = method_config("csrec-t", alpha=0.25, expectation_term=expectation_term, **kw)
    d_config = method_config("csrec-d", **kw)
    (main,) = teacher_specs(t_config)
    assert main.robust and main.alpha == 0.25 and main.expectation_term is expectation_term
    assert main.subsample is None  # g1 trains on the full data
    assert main.side == teacher_specs(d_config)[0]
    assert main.side.key(data.fingerprint, t_config.train) == teacher_specs(d_config)[0].key(data.fingerprint, d_config.train)
    assert main.key(data.fingerprint, t_config.train) != main.side.key(data.fingerprint, t_config.train)


@pytest.mark.parametrize("method", ["base", "softrec"])
def test_specs_without_teachers(method, method_config):
    assert teacher_specs(method_config(method)) == []


# --- keys ----------------------------------------------------------------------------------------
def test_teacher_key_stable_and_sensitive():
    train = TrainConfig(epochs=3)
    base = TeacherSpec("gru4rec", (("embedding_dim", 8),), seed=1, subsample=0.8, subsample_seed=2)
    key = base.key("fp", train)
    assert key == TeacherSpec("gru4rec", (("embedding_dim", 8),), seed=1, subsample=0.8, subsample_seed=2).key("fp", train)
    assert key == base.key("fp", TrainConfig(epochs=3))
    changed = [
        dataclasses.replace(base, seed=2).key("fp", train),
        dataclasses.replace(base, subsample=0.7).key("fp", train),
        dataclasses.replace(base, subsample_seed=3).key("fp", train),
        dataclasses.replace(base, model=(("embedding_dim", 16),)).key("fp", train),
        base.key("other-fingerprint", train),
        base.key("fp", TrainConfig(epochs=4)),
        base.key("fp", TrainConfig(epochs=3, lr=1e-3)),
    ]
    assert key not in changed and len(set(changed)) == len(changed)
    # Settings that do not change the trained weights (the spec's own seed wins) do not change it.
    assert base.key("fp", TrainConfig(epochs=3, seed=12345, device="cpu", progress=False)) == key
    robust = TeacherSpec("gru4rec", (), seed=5, robust=True, alpha=0.5, side=base)
    assert robust.key("fp", train) != dataclasses.replace(robust, side=dataclasses.replace(base, seed=9)).key("fp", train)
    assert robust.key("fp", train) != dataclasses.replace(robust, alpha=0.25).key("fp", train)
    assert robust.key("fp", train) != dataclasses.replace(robust, expectation_term=False).key("fp", train)


# --- data-level subsets --------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.8, 0.5, 0.33])
def test_subsample_seeded_sized_without_replacement(data, fraction):
    n = data.n_sequences
    first = data.subsample(fraction, 2000)
    assert np.array_equal(first, data.subsample(fraction, 2000))
    assert len(first) == math.floor(fraction * n)
    assert len(np.unique(first)) == len(first)
    assert first.min() >= 0 and first.max() < n
    assert np.all(np.diff(first) > 0)
    assert not np.array_equal(first, data.subsample(fraction, 2001))


def test_subsample_full_fraction_and_bad_fraction(data):
    assert np.array_equal(data.subsample(1.0, 3), np.arange(data.n_sequences))
    with pytest.raises(Exception):
        data.subsample(0.0, 1)


def test_subsample_teacher_trains_on_its_subset(data, monkeypatch, method_config):
    seen = {}
    real = teachers_module.train_model

    def spy(model, data_, train, *args, sequence_subset=None, **kwargs):
        seen["subset"] = sequence_subset
        seen["seed"] = train.seed
        return real(model, data_, train, *args, sequence_subset=sequence_subset, **kwargs)

    monkeypatch.setattr(teachers_module, "train_model", spy)
    config = method_config("csrec-d", num_teachers=2, subsample=0.5)
    spec = teacher_specs(config)[1]
    trained = train_teacher(spec, data, config.train)
    assert np.array_equal(seen["subset"], data.subsample(0.5, spec.subsample_seed))
    assert seen["seed"] == spec.seed
    assert set(trained.info["valid"]) >= {"ndcg@10", "recall@10"} and "test" in trained.info
    assert trained.key == spec.key(data.fingerprint, config.train)


def test_robust_teacher_requires_side(data, method_config):
    (spec,) = teacher_specs(method_config("csrec-t"))
    with pytest.raises(ValueError, match="side"):
        train_teacher(spec, data, method_config("csrec-t").train)


# --- SoftRec: training counts only ---------------------------------------------------------------
def _hand_made_data() -> SequenceData:
    # Sub-session i: train part = s[:-2], valid = s[-2], test = s[-1].
    sequences = [[1, 2, 3, 2, 4, 6], [2, 3, 1, 5, 7], [3, 3, 1, 2, 3, 5, 1]]
    items = np.concatenate([np.array(s) for s in sequences]).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int64)
    return SequenceData(
        name="hand", n_items=8, max_len=8, items=items, positive=np.ones(len(items), dtype=bool),
        offsets=offsets, source_user=np.arange(3), true_items=None, fingerprint="hand-made-1",
        windowing="authors", n_source_users=3,
    )


def _brute_train_counts(data: SequenceData) -> list[int]:
    counts = [0] * (data.n_items + 1)
    for s in range(data.n_sequences):
        seq = data.items[data.offsets[s] : data.offsets[s + 1]]
        for item in seq[:-2]:
            counts[int(item)] += 1
    return counts


def test_item_counts_training_parts_only():
    data = _hand_made_data()
    counts = data.item_counts()
    assert counts.tolist() == _brute_train_counts(data)
    assert counts.tolist() == [0, 3, 4, 5, 0, 0, 0, 0, 0]
    # Items 6 and 7 occur only as test targets, 4 and 5 only as validation/test targets, 8 never;
    # item 1 is also a test target but counts its training occurrences only.
    assert counts[6] == 0 and counts[7] == 0 and counts[4] == 0 and counts[5] == 0


def test_item_counts_on_synthetic_data(data):
    assert data.item_counts().tolist() == _brute_train_counts(data)


def test_softrec_store_uses_training_counts_only(method_config):
    data = _hand_made_data()
    store, infos = build_method_store(method_config("softrec"), data, pool=None)
    assert infos == [] and store.mode == "prior" and store.n_rows == data.n_train_targets
    counts = _brute_train_counts(data)[1:]
    want = [-5.0 + 10.0 * c / max(counts) for c in counts]
    np.testing.assert_allclose(store.arrays["logits"], want, rtol=0, atol=1e-6)
    assert store.arrays["logits"][6 - 1] == pytest.approx(-5.0)  # test-only item
    assert store.arrays["logits"][3 - 1] == pytest.approx(5.0)  # most frequent training item
    np.testing.assert_allclose(store.arrays["logits"], popularity_logits(torch.as_tensor(counts)).numpy(), atol=1e-6)
    rows = torch.tensor([0, 3, 1])
    probs = store.teacher_probs(rows, 3.0)
    exps = [math.exp(v / 3.0) for v in want]
    expected = torch.tensor([e / sum(exps) for e in exps], dtype=torch.float32).expand(3, -1)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("expectation_term", [True, False])
def test_robust_teacher_optimises_g1_and_h_against_frozen_side(data, monkeypatch, method_config, expectation_term):
    seen = {}
    real = teachers_module.train_model

    def spy(model, data_, train, **kwargs):
        seen.update(model=model, loss_fn=kwargs.get("loss_fn"), params=kwargs.get("params"),
                    subset=kwargs.get("sequence_subset"))
        return real(model, data_, train, **kwargs)

    monkeypatch.setattr(teachers_module, "train_model", spy)
    config = method_config("csrec-t", alpha=0.25, expectation_term=expectation_term)
    (spec,) = teacher_specs(config)
    side = train_teacher(spec.side, data, config.train)
    assert np.array_equal(seen["subset"], data.subsample(spec.side.subsample, spec.side.subsample_seed))
    train_teacher(spec, data, config.train, side=side.model)
    loss_fn = seen["loss_fn"]
    assert isinstance(loss_fn, teachers_module.RobustTeacherLoss)
    assert loss_fn.side is side.model and loss_fn.alpha == 0.25
    assert seen["subset"] is None  # g1 trains on the full data
    ids = {id(p) for p in seen["params"]}
    assert {id(p) for p in seen["model"].parameters()} <= ids
    assert not ids & {id(p) for p in side.model.parameters()}
    if expectation_term:
        assert isinstance(loss_fn.noise, NoiseMatrix)
        assert {id(loss_fn.noise.observed), id(loss_fn.noise.preferred)} <= ids
        assert loss_fn.noise.observed.shape == (data.n_items, dict(spec.model)["embedding_dim"])
    else:
        assert loss_fn.noise is None
        assert len(ids) == len(list(seen["model"].parameters()))


def test_running_column_max_follows_the_authors_batches_by_hand():
    # h̃ = M·Nᵀ with M = [1, 2, −1]ᵀ, N = [1, −1, 3]ᵀ:  rows 0: [1, −1, 3], 1: [2, −2, 6], 2: [−1, 1, −3].
    noise = NoiseMatrix(3, 1, column_max="running").double()
    with torch.no_grad():
        noise.observed.copy_(torch.tensor([[1.0], [2.0], [-1.0]]))
        noise.preferred.copy_(torch.tensor([[1.0], [-1.0], [3.0]]))
    assert noise.running_max.tolist() == [-10.0, -10.0, -10.0]

    def step(observed):
        noise.zero_grad()
        current = noise.column_max(noise.rows(torch.tensor(observed)))
        current.sum().backward()
        return current.tolist(), noise.observed.grad[:, 0].tolist()

    # Batch 1 observes item 2: every column beats −10.
    assert step([2]) == ([-1.0, 1.0, -3.0], [0.0, 0.0, 1.0 - 1.0 + 3.0])
    # Batch 2 observes item 0: new maxima in columns 0 and 2 only; column 1 keeps the stored 1
    # with no gradient, so d/dM_0 = N_0 + N_2 = 4.
    assert step([0]) == ([1.0, 1.0, 3.0], [4.0, 0.0, 0.0])
    # The stored max never decreases, even when h̃ itself does.
    with torch.no_grad():
        noise.observed.mul_(0.1)
    assert step([0, 2]) == ([1.0, 1.0, 3.0], [0.0, 0.0, 0.0])
    # Batch 4 observes item 1 (now 0.1·[2, −2, 6] = [0.2, −0.2, 0.6]): still below the stored max.
    values, _ = step([1])
    assert values == [1.0, 1.0, 3.0]
    assert noise.running_max.requires_grad is False
    assert "running_max" not in noise.state_dict()  # a buffer that moves with .to(), never saved


def test_running_column_max_needs_the_batch_rows_and_a_known_mode():
    with pytest.raises(ValueError, match="running column max needs"):
        NoiseMatrix(3, 1, column_max="running").column_max()
    with pytest.raises(ValueError, match="unknown column_max"):
        NoiseMatrix(3, 1, column_max="stale")


def test_noise_column_max_reaches_the_robust_teacher_spec_and_key(method_config):
    exact = teacher_specs(method_config("csrec-t"))[0]
    running = teacher_specs(method_config("csrec-t", noise_column_max="running"))[0]
    assert exact.noise_column_max == "exact" and running.noise_column_max == "running"
    assert "noise_column_max" not in exact.to_dict()  # keys of pools trained before the option stay
    assert exact.key("fp", TrainConfig()) != running.key("fp", TrainConfig())
    assert "running max" in running.describe()


def test_teacher_key_keeps_earlier_pools_and_tells_new_settings_apart(method_config):
    spec = teacher_specs(method_config("csrec-m"))[0]
    key = lambda **kw: spec.key("fp", TrainConfig(**kw))  # noqa: E731
    # Keys of pools trained before precision and batch_unit existed: exactly the old payload.
    old_fields = {k: v for k, v in dataclasses.asdict(TrainConfig()).items()
                  if k not in ("seed", "device", "progress", "precision", "batch_unit", "subset_validation",
                               "soft_label_cache_gib")}
    from csrec.methods.teachers import _train_key_fields
    assert _train_key_fields(TrainConfig()) == old_fields
    assert key() == key(precision="fp32")
    assert key() == key(subset_validation=True)
    assert key() == key(soft_label_cache_gib=0.0)  # a resource of the student, not of a teacher
    assert len({key(), key(precision="bf16"), key(batch_unit="targets"), key(subset_validation=False)}) == 4


def test_replicate_shifts_student_and_teacher_seeds(method_config):
    config = method_config("csrec-d")
    assert config.replicate(0) is config
    shifted = config.replicate(2)
    assert shifted.train.seed == config.train.seed + 2
    assert (shifted.method.teacher_seed, shifted.method.subsample_seed) == (1200, 2200)
    seeds = {s.seed for k in range(3) for s in teacher_specs(config.replicate(k))}
    assert len({(s.seed, s.subsample_seed) for k in range(3) for s in teacher_specs(config.replicate(k))}) == 6
    assert seeds == {1000, 1100, 1200}
