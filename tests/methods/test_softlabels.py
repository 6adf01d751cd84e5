"""The soft-label store against the trained teachers evaluated directly (Eq. 19's softmax(e / T))."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from csrec.methods.softlabels import SoftLabelStore, build_store
from csrec.training import BatchMaker

FINGERPRINT = "store-under-test"


def _per_sequence_logits(model, data) -> torch.Tensor:
    """[n_train_targets, n_items] float64 logits, one sub-session at a time, in flat target order.

    Independent of BatchMaker: sub-session s contributes its training part s[:-2]; the target at
    position t + 1 follows the prefix s[:t + 1], and rows go sub-session by sub-session.
    """
    model.eval()
    rows = []
    with torch.no_grad():
        for s in range(data.n_sequences):
            seq = data.items[data.offsets[s] : data.offsets[s + 1]]
            train = seq[:-2]
            if len(train) < 2:
                continue
            hidden = model.encode(torch.as_tensor(train[:-1])[None])[0]  # one rep per prefix
            rows.append(model.item_scores(hidden).double())
    return torch.cat(rows)


@pytest.fixture(scope="module")
def exact(data, m_setup):
    """Per-teacher exact logits over every training target, float64: [m, n_rows, n_items]."""
    _, _, teachers = m_setup
    logits = torch.stack([_per_sequence_logits(t.model, data) for t in teachers])
    assert logits.shape == (2, data.n_train_targets, data.n_items)
    return logits


def _exact_probs(exact_logits, temperature, ensemble="logits", weights=None):
    if ensemble == "logits":
        return torch.softmax(exact_logits.mean(0) / temperature, -1)
    w = torch.tensor(weights or [1.0] * exact_logits.shape[0], dtype=torch.float64)
    return (w.view(-1, 1, 1) * torch.softmax(exact_logits / temperature, -1)).sum(0) / w.sum()


def _store(data, m_setup, **kw) -> SoftLabelStore:
    _, _, teachers = m_setup
    return build_store([t.model for t in teachers], data, device="cpu", fingerprint=FINGERPRINT, **kw)


@pytest.fixture(scope="module")
def factored(data, m_setup):
    return _store(data, m_setup)


def _all_rows(store):
    return torch.arange(store.n_rows)


def _mean_kl(p: torch.Tensor, q: torch.Tensor) -> float:
    p, q = p.double(), q.double()
    return float((p * (p.clamp_min(1e-300).log() - q.clamp_min(1e-300).log())).sum(-1).mean())


# --- exactness of the factored store -------------------------------------------------------------
def test_teachers_are_not_trivial(exact):
    # Two differently seeded teachers that disagree, and soft labels that are far from uniform,
    # so the comparisons below can fail.
    assert float((exact[0] - exact[1]).abs().mean()) > 1e-2
    assert float(torch.softmax(exact.mean(0), -1).max(-1).values.mean()) > 2.0 / exact.shape[-1]


@pytest.mark.parametrize("temperature", [1.0, 3.0, 9.0])
def test_factored_store_is_exact_logits_ensemble(data, factored, exact, temperature):
    assert factored.mode == "factored" and factored.n_rows == data.n_train_targets
    assert factored.n_items == data.n_items
    got = factored.teacher_probs(_all_rows(factored), temperature)
    torch.testing.assert_close(got.double(), _exact_probs(exact, temperature), rtol=0, atol=1e-5)
    torch.testing.assert_close(got.sum(-1).double(), torch.ones(factored.n_rows, dtype=torch.float64), rtol=0, atol=1e-5)


@pytest.mark.parametrize("weights", [None, [0.1, 0.9]])
def test_factored_store_is_exact_probability_ensemble(data, m_setup, exact, weights):
    store = _store(data, m_setup, ensemble="probs", weights=weights)
    for temperature in (1.0, 3.0):
        got = store.teacher_probs(_all_rows(store), temperature)
        want = _exact_probs(exact, temperature, "probs", weights)
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)
    # The two ensembles differ on these teachers (so mixing them up would be caught).
    assert float((_exact_probs(exact, 3.0, "probs", weights) - _exact_probs(exact, 3.0)).abs().max()) > 1e-3


@pytest.mark.parametrize("temperature", [1.0, 3.0, 9.0])
def test_factored_store_bfloat16_product_within_stated_error(factored, exact, temperature):
    want = _exact_probs(exact, temperature)
    got = factored.teacher_probs(_all_rows(factored), temperature, precision="bfloat16").double()
    kl = float((want * (want.log() - got.log())).sum(-1).mean())
    assert 0.0 <= kl < 1e-3  # the documented bound (mean KL, nats)
    assert float((got - want).abs().max()) > 0.0  # it really ran in reduced precision
    torch.testing.assert_close(got.sum(-1), torch.ones(len(got), dtype=torch.float64), rtol=0, atol=1e-5)


def test_precision_auto_follows_the_hardware(factored, monkeypatch):
    from csrec.models import precision

    rows = torch.arange(10)
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(precision, "native_bfloat16", lambda device, native=native: native)
        assert precision.resolve_precision("auto", torch.device("cpu")) == precision.CANONICAL[expected]
        torch.testing.assert_close(factored.teacher_probs(rows, 3.0, "auto"), factored.teacher_probs(rows, 3.0, expected))
    with pytest.raises(ValueError, match="precision"):
        factored.teacher_probs(rows, 3.0, "float8")


def test_factored_store_subset_of_rows_in_any_order(factored, exact):
    rows = torch.tensor([17, 3, 3, factored.n_rows - 1, 0, 401])
    torch.testing.assert_close(factored.teacher_probs(rows, 3.0).double(), _exact_probs(exact, 3.0)[rows], rtol=0, atol=1e-5)


# --- approximate stores --------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_dense_logits_store_close_to_exact_at_any_temperature(data, m_setup, exact, temperature):
    store = _store(data, m_setup, mode="dense", temperature=3.0)
    assert store.arrays["values"].dtype == np.float16
    assert store.arrays["values"].shape == (data.n_train_targets, data.n_items)
    got = store.teacher_probs(_all_rows(store), temperature)
    want = _exact_probs(exact, temperature)
    assert _mean_kl(want, got) < 1e-3
    assert float((got.double() - want).abs().max()) < 1e-2


def test_dense_probs_store_close_to_exact_and_pinned_to_its_temperature(data, m_setup, exact):
    store = _store(data, m_setup, mode="dense", ensemble="probs", temperature=3.0, weights=[0.3, 0.7])
    got = store.teacher_probs(_all_rows(store), 3.0)
    want = _exact_probs(exact, 3.0, "probs", [0.3, 0.7])
    assert _mean_kl(want, got) < 1e-3
    assert float((got.double() - want).abs().max()) < 1e-2
    with pytest.raises(ValueError, match="T=3.0"):
        store.teacher_probs(_all_rows(store), 1.0)


@pytest.mark.parametrize("k", [5, 20])
def test_topk_store_keeps_top_k_exactly_and_bounds_the_tail(data, m_setup, exact, k):
    store = _store(data, m_setup, mode="topk", temperature=3.0, top_k=k)
    assert store.arrays["values"].shape == (data.n_train_targets, k)
    got = store.teacher_probs(_all_rows(store), 3.0).double()
    want = _exact_probs(exact, 3.0)
    top = torch.topk(want, k, dim=-1)
    torch.testing.assert_close(got.gather(1, top.indices), top.values, rtol=0, atol=1e-5)
    tail_mass = 1.0 - top.values.sum(-1)
    total_variation = 0.5 * (got - want).abs().sum(-1)
    assert bool((total_variation <= tail_mass + 1e-5).all())
    torch.testing.assert_close(got.sum(-1), torch.ones(store.n_rows, dtype=torch.float64), rtol=0, atol=1e-5)
    # The rest of the mass is spread evenly over the other items.
    rest = got.clone().scatter_(1, top.indices, -1.0)
    rest_values = rest[rest >= 0].view(store.n_rows, -1)
    torch.testing.assert_close(rest_values, rest_values[:, :1].expand_as(rest_values), rtol=0, atol=1e-7)
    with pytest.raises(ValueError):
        store.teacher_probs(_all_rows(store), 1.0)


def test_topk_with_k_at_least_n_items_is_exact(data, m_setup, exact):
    store = _store(data, m_setup, mode="topk", temperature=3.0, top_k=data.n_items + 10)
    got = store.teacher_probs(_all_rows(store), 3.0)
    torch.testing.assert_close(got.double(), _exact_probs(exact, 3.0), rtol=0, atol=1e-5)


def test_fixed_temperature_store_needs_a_temperature(data, m_setup):
    with pytest.raises(ValueError, match="temperature"):
        _store(data, m_setup, mode="topk")
    with pytest.raises(ValueError, match="mode"):
        _store(data, m_setup, mode="sparse")


# --- persistence, pickling, read-only arrays ------------------------------------------------------
@pytest.mark.parametrize("mode", ["factored", "dense", "topk"])
def test_save_load_round_trip(tmp_path, data, m_setup, mode):
    store = _store(data, m_setup, mode=mode, temperature=3.0, top_k=7)
    path = store.save(tmp_path / "sub" / "store.npz")
    assert path.is_file() and not [p for p in path.parent.iterdir() if p != path]  # no temp files left
    loaded = SoftLabelStore.load(path, fingerprint=FINGERPRINT)
    assert loaded.mode == store.mode and loaded.meta == store.meta
    assert set(loaded.arrays) == set(store.arrays)
    for name, array in store.arrays.items():
        assert loaded.arrays[name].dtype == array.dtype
        assert np.array_equal(loaded.arrays[name], array)
    rows = torch.tensor([0, 5, 99])
    assert torch.equal(loaded.teacher_probs(rows, 3.0), store.teacher_probs(rows, 3.0))
    assert SoftLabelStore.load(path).meta["fingerprint"] == FINGERPRINT
    with pytest.raises(ValueError, match="fingerprint"):
        SoftLabelStore.load(path, fingerprint="some-other-teachers")


def test_pickle_round_trip_drops_device_cache(factored):
    rows = torch.tensor([1, 2, 3])
    factored.teacher_probs(rows, 3.0)
    assert factored._device_cache
    clone = pickle.loads(pickle.dumps(factored))
    assert clone._device_cache == {}
    assert torch.equal(clone.teacher_probs(rows, 3.0), factored.teacher_probs(rows, 3.0))


@pytest.mark.parametrize("mode", ["factored", "dense", "topk"])
def test_read_only_arrays_work(data, m_setup, mode):
    store = _store(data, m_setup, mode=mode, temperature=3.0, top_k=7)
    frozen = {}
    for name, array in store.arrays.items():
        copy = array.copy()
        copy.setflags(write=False)  # as arrays mapped from the Ray object store
        frozen[name] = copy
    read_only = SoftLabelStore(store.mode, frozen, dict(store.meta))
    rows = torch.tensor([4, 0, 250])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable array" warning leaks out either
        got = read_only.teacher_probs(rows, 3.0)
    torch.testing.assert_close(got, store.teacher_probs(rows, 3.0), rtol=0, atol=0)
    for name, array in frozen.items():
        assert not array.flags.writeable and np.array_equal(array, store.arrays[name])


# --- rows: the store's order is the training loop's order -----------------------------------------
def test_store_rows_match_training_batches(data, m_setup, factored):
    _, _, teachers = m_setup
    maker = BatchMaker(data, None, 16, torch.device("cpu"))
    seen = []
    for i, batch in enumerate(maker.batches(np.random.default_rng(7))):
        seen.append(batch.rows)
        if i >= 3:
            continue  # check the first few batches directly; collect rows of all
        with torch.no_grad():
            logits = []
            for t in teachers:
                t.model.eval()
                reps, targets = t.model.training_representations(batch.inputs, batch.targets)
                logits.append(t.model.item_scores(reps))
        assert len(targets) == len(batch.rows)
        want = torch.softmax(torch.stack(logits).mean(0) / 3.0, -1)
        torch.testing.assert_close(factored.teacher_probs(batch.rows, 3.0), want, rtol=0, atol=1e-5)
    # An epoch's batches visit every training target exactly once.
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.arange(data.n_train_targets))


def test_store_rows_match_subsampled_batches(data, m_setup, factored):
    _, _, teachers = m_setup
    subset = data.subsample(0.5, 11)
    maker = BatchMaker(data, subset, 8, torch.device("cpu"))
    batch = next(maker.batches(np.random.default_rng(3)))
    assert set(batch.sequences.tolist()) <= set(subset.tolist())
    with torch.no_grad():
        reps, _ = teachers[0].model.training_representations(batch.inputs, batch.targets)
        one = teachers[0].model.item_scores(reps)
        reps, _ = teachers[1].model.training_representations(batch.inputs, batch.targets)
        two = teachers[1].model.item_scores(reps)
    want = torch.softmax((one + two) / 2, -1)
    torch.testing.assert_close(factored.teacher_probs(batch.rows, 1.0), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("ensemble", ["logits", "probs"])
def test_factored_store_with_output_biases_matches_brute_force(ensemble):
    # Backbones with an output bias (BERT4Rec) add b_k to each teacher's logits before ensembling.
    g = torch.Generator().manual_seed(3)
    m, n_rows, n_items, d = 3, 11, 9, 4
    reps = torch.randn(m, n_rows, d, generator=g)
    tables = torch.randn(m, n_items, d, generator=g)
    biases = torch.randn(m, n_items, generator=g)
    weights = torch.tensor([0.2, 0.3, 0.5])
    store = SoftLabelStore("factored", {"reps": reps.numpy(), "tables": tables.numpy(), "biases": biases.numpy(),
                                        "weights": weights.numpy()},
                           {"n_rows": n_rows, "n_items": n_items, "n_teachers": m, "ensemble": ensemble})
    rows = torch.tensor([4, 0, 10, 4])
    for temperature in (1.0, 3.0):
        per_teacher = [[[sum(float(reps[k, r, i]) * float(tables[k, j, i]) for i in range(d)) + float(biases[k, j])
                         for j in range(n_items)] for r in rows.tolist()] for k in range(m)]
        logits = torch.tensor(per_teacher, dtype=torch.float64)  # [m, rows, items]
        if ensemble == "logits":
            want = torch.softmax(logits.mean(0) / temperature, -1)
        else:
            want = (weights.double().view(-1, 1, 1) * torch.softmax(logits / temperature, -1)).sum(0) / weights.sum()
        got = store.teacher_probs(rows, temperature, "float32").double()
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


# --- the student's loss reading the store --------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("mode", ["factored", "dense", "topk"])
def test_soft_label_loss_reads_the_store_chunk_by_chunk(data, m_setup, factored, precision, mode, monkeypatch):
    """SoftLabelLoss = Eq. 20 with whole soft labels, while reading at most one chunk of rows at a time
    (without the all-rows cache: ``cache_bytes=0``)."""
    from csrec.methods import losses
    from csrec.methods.run import SoftLabelLoss
    from csrec.models import build_backbone
    from csrec.models.precision import autocast

    store = factored if mode == "factored" else _store(data, m_setup, mode=mode, temperature=3.0)
    batch = BatchMaker(data, None, 64, torch.device("cpu")).make(torch.arange(64))
    torch.manual_seed(3)
    student = build_backbone("gru4rec", data.n_items, data.max_len).eval()
    with torch.no_grad():
        reps, targets = student.training_representations(batch.inputs, batch.targets)
        logits = student.item_scores(reps).double()
        probs = store.teacher_probs(batch.rows, 3.0, "float32").double()
        want, _ = losses.student_loss(logits, targets - 1, losses.soft_label_from_probs(probs, targets - 1), 0.5)
    read = []
    original = store.teacher_probs

    def recording(rows, temperature, precision="float32"):
        read.append(len(rows))
        return original(rows, temperature, precision)

    monkeypatch.setattr(store, "teacher_probs", recording)
    monkeypatch.setattr(losses, "FUSED_CHUNK_ELEMENTS", 7 * data.n_items)  # 7 rows per chunk
    loss_fn = SoftLabelLoss(store, beta=0.5, temperature=3.0, precision=precision, cache_bytes=0)
    values = []
    for _ in range(2):  # the second visit takes Σ r log r from the per-row cache
        with autocast(precision, torch.device("cpu")):
            loss, logs = loss_fn(student, batch)
        values.append(float(loss.detach()))
    assert max(read) <= 7 and sum(read) == 2 * len(batch.rows)
    tolerance = 1e-5 if precision == "fp32" else 5e-3  # bf16: the tolerance stated in test_losses.py
    assert values[0] == pytest.approx(float(want), rel=tolerance)
    assert values[1] == pytest.approx(values[0], rel=1e-6)
    assert loss_fn.seconds_reading > 0



def _losses_and_item_gradients(student, loss_fn, batches):
    """The loss and the item-embedding gradient of each batch in turn (one backward each)."""
    values, grads = [], []
    for batch in batches:
        student.zero_grad()
        loss, _ = loss_fn(student, batch)
        loss.backward()
        values.append(float(loss.detach()))
        grads.append(student.item_embedding.weight.grad.clone())
    return values, grads


@pytest.mark.parametrize("direction", ["code", "paper"])
@pytest.mark.parametrize("mode", ["factored", "topk"])
def test_soft_label_loss_with_all_rows_cached_equals_reading_the_store(data, m_setup, factored, mode, direction,
                                                                       monkeypatch):
    """When every row's soft label fits in ``cache_bytes``, the store is read once, in row order,
    and the loss and the gradient are those of reading it batch by batch."""
    from csrec.methods.run import SoftLabelLoss
    from csrec.models import build_backbone

    store = factored if mode == "factored" else _store(data, m_setup, mode=mode, temperature=3.0)
    batches = [BatchMaker(data, None, 32, torch.device("cpu")).make(torch.arange(lo, lo + 32)) for lo in (0, 32, 0)]
    read = []
    original = store.teacher_probs

    def recording(rows, temperature, precision="float32"):
        read.append(rows.clone())
        return original(rows, temperature, precision)

    monkeypatch.setattr(store, "teacher_probs", recording)
    results = {}
    for cache_bytes in (0, 4 * store.n_rows * store.n_items):
        torch.manual_seed(3)
        student = build_backbone("gru4rec", data.n_items, data.max_len).eval()
        loss_fn = SoftLabelLoss(store, beta=0.5, temperature=3.0, direction=direction, cache_bytes=cache_bytes)
        assert loss_fn.caches == bool(cache_bytes)
        read.clear()
        values, grads = _losses_and_item_gradients(student, loss_fn, batches)
        results[cache_bytes] = values, grads, torch.cat(read)
    (plain, plain_grads, _), (cached, cached_grads, cached_read) = results.values()
    assert torch.equal(cached_read, torch.arange(store.n_rows))  # built once, every row, in row order
    assert cached == pytest.approx(plain, rel=1e-6)
    for got, want in zip(cached_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert not SoftLabelLoss(store, beta=0.5, temperature=3.0, cache_bytes=4 * store.n_rows * store.n_items - 1).caches


@pytest.mark.parametrize("direction", ["code", "paper"])
def test_a_bf16_soft_label_cache_holds_half_the_bytes_and_the_streamed_loss(data, factored, direction):
    """Under a bfloat16 product the cache is bfloat16: 2 bytes per entry (a budget of 2 · rows · items
    fits, where float32 would need 4), and the loss and gradient stay those of rebuilding the soft
    labels in every batch within the bf16 tolerance of test_losses.py."""
    from csrec.methods.run import SoftLabelLoss
    from csrec.models import build_backbone

    entries = factored.n_rows * factored.n_items
    assert not SoftLabelLoss(factored, 0.5, 3.0, precision="fp32", cache_bytes=2 * entries).caches
    batches = [BatchMaker(data, None, 32, torch.device("cpu")).make(torch.arange(lo, lo + 32)) for lo in (0, 32)]
    results = {}
    for cache_bytes in (0, 2 * entries):
        torch.manual_seed(3)
        student = build_backbone("gru4rec", data.n_items, data.max_len).eval()
        loss_fn = SoftLabelLoss(factored, 0.5, 3.0, direction=direction, precision="bf16", cache_bytes=cache_bytes)
        assert loss_fn.caches == bool(cache_bytes) and loss_fn.cache_bytes == 2 * entries
        values, grads = _losses_and_item_gradients(student, loss_fn, batches)
        if cache_bytes:
            assert loss_fn._cache.dtype == torch.bfloat16
        results[cache_bytes] = values, grads
    (streamed, streamed_grads), (cached, cached_grads) = results.values()
    assert cached == pytest.approx(streamed, rel=5e-3)
    for got, want in zip(cached_grads, streamed_grads):
        assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.999
