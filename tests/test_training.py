"""The training loop: one-pass loss = the authors' per-prefix loss, batch bookkeeping, early stopping."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csrec.errors import ConfigError
from csrec.evaluation import evaluate
from csrec.models import backbone_class, backbone_names, build_backbone
from csrec.training import BatchMaker, StaleTrainingState, TrainConfig, cross_entropy_loss, train_model

CAUSAL = [name for name in backbone_names() if backbone_class(name).causal]


def _flat_targets(data) -> list[int]:
    """Every training target in the flat order: s[1], ..., s[-3] of each sub-session in turn."""
    out = []
    for lo, hi in zip(data.offsets[:-1].tolist(), data.offsets[1:].tolist()):
        out.extend(data.items[lo + 1 : hi - 2].tolist())
    return out


def test_causal_backbones_exist():
    assert {"gru4rec", "narm", "nextitnet", "sasrec"} <= set(CAUSAL)


@pytest.mark.parametrize("name", CAUSAL)
def test_one_pass_loss_equals_per_prefix_loss(small_data, name):
    torch.manual_seed(0)
    model = build_backbone(name, small_data.n_items, small_data.max_len).eval()
    maker = BatchMaker(small_data, np.arange(12), batch_size=12, device=torch.device("cpu"))
    batch = maker.make(torch.as_tensor(maker.subset))
    with torch.no_grad():
        reps, targets = model.training_representations(batch.inputs, batch.targets)
        one_pass = F.cross_entropy(model.item_scores(reps), targets - 1)
        loss, logs = cross_entropy_loss(model, batch)
        # The authors' loader: every prefix of the training part is its own sample, supervised
        # on its last item only, and run through the model alone.
        inputs, all_targets = small_data.train_arrays()
        per_prefix = []
        for seq in maker.subset.tolist():
            for t in range(int(small_data.train_target_counts()[seq])):
                prefix = torch.as_tensor(inputs[seq : seq + 1, : t + 1])
                rep = model.last_representation(prefix, torch.tensor([t + 1]))
                target = torch.as_tensor([all_targets[seq, t] - 1])
                per_prefix.append(F.cross_entropy(model.item_scores(rep), target))
        extra = model.extra_loss()
    assert len(per_prefix) == len(targets) == maker.n_targets
    expected = torch.stack(per_prefix).mean()
    torch.testing.assert_close(one_pass, expected, rtol=1e-5, atol=1e-6)
    assert logs["ce"] == pytest.approx(float(expected), rel=1e-5)
    assert float(loss) == pytest.approx(float(one_pass) + (0.0 if extra is None else float(extra)), rel=1e-6)


def test_batches_cover_every_target_once(small_data):
    maker = BatchMaker(small_data, None, batch_size=17, device=torch.device("cpu"))
    counts = small_data.train_target_counts()
    assert maker.subset.tolist() == np.flatnonzero(counts > 0).tolist()
    assert maker.n_targets == small_data.n_train_targets
    flat = np.array(_flat_targets(small_data))
    assert len(flat) == small_data.n_train_targets
    seen_sequences, seen_rows = [], []
    batches = list(maker.batches(np.random.default_rng(0)))
    assert len(batches) == len(maker) == math.ceil(len(maker.subset) / 17)
    for batch in batches:
        mask = batch.targets > 0
        # rows locate each target (row-major order) in the flat training-target order.
        assert flat[batch.rows.numpy()].tolist() == batch.targets[mask].tolist()
        assert batch.inputs.shape == batch.targets.shape
        assert batch.inputs.shape[1] == int(counts[batch.sequences.numpy()].max())  # padding trimmed
        seen_sequences.extend(batch.sequences.tolist())
        seen_rows.extend(batch.rows.tolist())
    assert sorted(seen_sequences) == maker.subset.tolist()
    assert sorted(seen_rows) == list(range(small_data.n_train_targets))
    # A different generator state gives a different order of the same batches.
    again = [b.sequences.tolist() for b in maker.batches(np.random.default_rng(1))]
    assert sum(again, []) != seen_sequences


def test_subset_batches_use_their_own_rows(small_data):
    subset = np.arange(0, small_data.n_sequences, 3)
    maker = BatchMaker(small_data, subset, batch_size=8, device=torch.device("cpu"))
    flat = np.array(_flat_targets(small_data))
    offsets = small_data.train_target_offsets()
    expected_rows = sorted(r for s in subset for r in range(offsets[s], offsets[s + 1]))
    rows = []
    for batch in maker.batches(np.random.default_rng(0)):
        assert set(batch.sequences.tolist()) <= set(subset.tolist())
        assert flat[batch.rows.numpy()].tolist() == batch.targets[batch.targets > 0].tolist()
        rows.extend(batch.rows.tolist())
    assert sorted(rows) == expected_rows


def _small_model(data, seed=0):
    torch.manual_seed(seed)
    return build_backbone("gru4rec", data.n_items, data.max_len, {"embedding_dim": 16, "hidden_dim": 16})


def test_early_stopping_restores_best_weights(small_data):
    model = _small_model(small_data)
    snapshots = {}

    def snapshot(log):
        snapshots[log.epoch] = copy.deepcopy(model.state_dict())

    config = TrainConfig(epochs=60, batch_size=32, lr=0.1, patience=1, seed=5, device="cpu", progress=False)
    outcome = train_model(model, small_data, config, on_epoch=snapshot)
    history = outcome.history
    values = [h.valid["ndcg@10"] for h in history]
    assert outcome.stopped_early and len(history) < config.epochs
    assert len(history) == outcome.best_epoch + 1  # patience 1: the first epoch without progress ends it
    assert outcome.best_value == max(values) == values[outcome.best_epoch - 1]
    assert values.index(max(values)) + 1 == outcome.best_epoch  # strict improvement picks the first
    assert values[-1] <= outcome.best_value
    assert [h.best_epoch for h in history][-1] == outcome.best_epoch
    # The model holds the best epoch's weights, not the last epoch's.
    state = model.state_dict()
    assert all(torch.equal(state[k], snapshots[outcome.best_epoch][k]) for k in state)
    assert not all(torch.equal(state[k], snapshots[len(history)][k]) for k in state)
    assert evaluate(model, small_data, "valid").metrics["ndcg@10"] == pytest.approx(outcome.best_value, abs=1e-12)
    assert all(math.isfinite(h.train_loss) and h.seconds_train >= 0 for h in history)


def test_patience_zero_never_stops(small_data):
    model = _small_model(small_data)
    config = TrainConfig(epochs=3, batch_size=64, lr=0.05, patience=0, device="cpu", progress=False)
    outcome = train_model(model, small_data, config)
    assert len(outcome.history) == 3 and not outcome.stopped_early
    assert 1 <= outcome.best_epoch <= 3


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_lowers_the_loss(small_data, precision):
    model = _small_model(small_data)
    config = TrainConfig(epochs=4, batch_size=32, lr=0.01, patience=0, device="cpu", progress=False, precision=precision)
    losses = [h.train_loss for h in train_model(model, small_data, config).history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", backbone_names())
def test_bf16_step_runs_the_products_in_bfloat16_and_keeps_float32_state(small_data, name):
    """Mixed precision: bfloat16 logits inside the step, float32 weights, gradients and optimiser state."""
    torch.manual_seed(0)
    model = build_backbone(name, small_data.n_items, small_data.max_len)
    seen = []

    def loss_fn(model, batch):
        reps, targets = model.training_representations(batch.inputs, batch.targets)
        seen.append(model.item_scores(reps).dtype)
        return cross_entropy_loss(model, batch)

    config = TrainConfig(epochs=1, batch_size=64, patience=0, device="cpu", progress=False, precision="bf16")
    outcome = train_model(model, small_data, config, loss_fn)
    assert seen and set(seen) == {torch.bfloat16}
    assert math.isfinite(outcome.history[0].train_loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # Evaluation scores in float32 whatever the training precision: its ranks are the float32 ones.
    reps = model.last_representation(torch.tensor([[1, 2, 3]]), torch.tensor([3]))
    assert model.item_scores(reps).dtype == torch.float32


def test_bf16_training_stays_close_to_fp32_and_is_repeatable(small_data):
    results = {}
    for precision in ("fp32", "bf16", "bf16"):
        model = _small_model(small_data)
        config = TrainConfig(epochs=3, batch_size=32, lr=0.01, patience=0, seed=3, device="cpu", progress=False,
                             precision=precision)
        history = train_model(model, small_data, config).history
        results.setdefault(precision, []).append([h.train_loss for h in history])
    fp32, (bf16, bf16_again) = results["fp32"][0], results["bf16"]
    assert bf16 == bf16_again  # same seed, same numbers
    assert bf16 != fp32  # it really ran in reduced precision
    assert all(abs(a - b) <= 0.02 * abs(a) for a, b in zip(fp32, bf16))


def test_auto_precision_follows_the_hardware(monkeypatch):
    from csrec.models import precision

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "native_bfloat16", lambda device, native=native: native)
        assert TrainConfig(precision="auto", device="cpu").resolved_precision() == expected
    assert TrainConfig(precision="fp32", device="cpu").resolved_precision() == "fp32"
    assert TrainConfig(precision="bf16", device="cpu").resolved_precision() == "bf16"


def test_progress_goes_to_stderr(small_data, capsys):
    model = _small_model(small_data)
    train_model(model, small_data, TrainConfig(epochs=1, device="cpu", progress=True), label="probe")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "[probe] epoch   1/1" in captured.err


@pytest.mark.parametrize(
    "overrides, fragment",
    [(dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"), (dict(lr=0.0), "lr"), (dict(patience=-1), "patience"),
     (dict(precision="fp16"), "precision")],
)
def test_bad_train_config(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(**overrides).validate()


@pytest.mark.parametrize("size", [1, 7, 64])
def test_batches_by_targets_pack_whole_sequences_to_about_size_targets(small_data, size):
    maker = BatchMaker(small_data, None, batch_size=size, device=torch.device("cpu"), unit="targets")
    counts = small_data.train_target_counts()
    order = np.random.default_rng(3).permutation(maker.subset)
    bounds = maker.bounds(order)
    # Brute force: a sequence joins batch ⌊(targets of the sequences before it) / size⌋.
    expected, seen = {}, 0
    for position, sequence in enumerate(order.tolist()):
        expected.setdefault(seen // size, []).append(position)
        seen += int(counts[sequence])
    assert [(p[0], p[-1] + 1) for p in expected.values()] == bounds
    sizes = [int(counts[order[lo:hi]].sum()) for lo, hi in bounds]
    assert sum(sizes) == maker.n_targets
    assert max(sizes) < size + int(counts.max())  # never more than one sequence past size
    assert abs(maker.n_targets / len(bounds) - size) < int(counts.max())  # about size on average
    assert len(bounds) <= len(maker)


def test_batches_by_sequences_unchanged_and_batch_unit_validated(small_data):
    by_default = BatchMaker(small_data, None, batch_size=5, device=torch.device("cpu"))
    order = np.arange(len(by_default.subset))
    assert by_default.bounds(order)[:2] == [(0, 5), (5, 10)]
    with pytest.raises(ConfigError, match="batch_unit"):
        TrainConfig(batch_unit="prefixes").validate()


@pytest.mark.parametrize("subset_validation", [True, False])
def test_a_subset_model_validates_on_its_subset_or_on_every_sequence(small_data, subset_validation):
    from csrec.evaluation import evaluate
    from csrec.training import _take

    subset = np.arange(0, small_data.n_sequences, 3)
    model = _small_model(small_data)
    config = TrainConfig(epochs=1, patience=0, progress=False, device="cpu", subset_validation=subset_validation)
    logged = train_model(model, small_data, config, sequence_subset=subset).history[0].valid
    full = small_data.eval_split("valid")
    split = _take(full, subset) if subset_validation else full
    assert logged == evaluate(model, small_data, "valid", eval_split=split).metrics
    other = full if subset_validation else _take(full, subset)
    assert logged != evaluate(model, small_data, "valid", eval_split=other).metrics


# --- resumable training ---------------------------------------------------------------------------
class _Interrupt(Exception):
    pass


def _interrupt_at(epoch: int):
    def on_epoch(log) -> None:
        if log.epoch == epoch:
            raise _Interrupt  # after the state of this epoch was written: a kill between epochs
    return on_epoch


@pytest.mark.parametrize("name", ["gru4rec", "cl4srec", "bert4rec"])
def test_interrupted_and_resumed_training_ends_bit_for_bit_where_an_uninterrupted_one_does(small_data, tmp_path, name):
    """Random batches, dropout, CL4SRec's augmentations and BERT4Rec's masks all continue their
    random streams: the resumed run's weights, history and best epoch are the uninterrupted run's."""
    config = TrainConfig(epochs=4, patience=0, batch_size=16, progress=False, seed=5)

    def fresh():
        torch.manual_seed(0)
        return build_backbone(name, small_data.n_items, small_data.max_len)

    straight = fresh()
    expected = train_model(straight, small_data, config)
    state = tmp_path / "state.pt"
    resumed = fresh()
    with pytest.raises(_Interrupt):
        train_model(resumed, small_data, config, state_path=state, on_epoch=_interrupt_at(2))
    seen = []
    resumed = fresh()  # a new process: a new model object, the saved state is all that carries over
    outcome = train_model(resumed, small_data, config, state_path=state, on_epoch=lambda log: seen.append(log.epoch))
    assert seen == [3, 4]  # only the epochs this call ran
    assert [h.train_loss for h in outcome.history] == [h.train_loss for h in expected.history]
    assert (outcome.best_epoch, outcome.best_value) == (expected.best_epoch, expected.best_value)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_resuming_a_robust_teacher_continues_its_noise_model_and_running_max(small_data, tmp_path):
    from csrec.methods.teachers import NoiseMatrix, RobustTeacherLoss

    config = TrainConfig(epochs=3, patience=0, batch_size=16, progress=False, seed=1)
    torch.manual_seed(3)
    side = build_backbone("gru4rec", small_data.n_items, small_data.max_len)

    def run(state_path=None, on_epoch=None):
        torch.manual_seed(0)
        model = build_backbone("gru4rec", small_data.n_items, small_data.max_len)
        noise = NoiseMatrix(small_data.n_items, 64, column_max="running")
        loss = RobustTeacherLoss(side, noise, alpha=0.5)
        outcome = train_model(model, small_data, config, loss_fn=loss, params=list(model.parameters()) + list(noise.parameters()),
                              state_path=state_path, on_epoch=on_epoch)
        return model, noise, outcome

    model, noise, expected = run()
    state = tmp_path / "teacher.state.pt"
    with pytest.raises(_Interrupt):
        run(state, _interrupt_at(1))
    model_r, noise_r, outcome = run(state)
    assert [h.train_loss for h in outcome.history] == [h.train_loss for h in expected.history]
    assert torch.equal(noise.running_max, noise_r.running_max) and torch.equal(noise.observed, noise_r.observed)
    assert all(torch.equal(v, model_r.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_finished_state_trains_nothing_more_and_a_foreign_state_is_refused(small_data, tmp_path):
    config = TrainConfig(epochs=30, patience=1, batch_size=16, progress=False, lr=0.5)  # stops early
    state = tmp_path / "state.pt"
    first = train_model(build_backbone("gru4rec", small_data.n_items, small_data.max_len), small_data, config, state_path=state)
    assert first.stopped_early
    calls = []
    again = train_model(build_backbone("gru4rec", small_data.n_items, small_data.max_len), small_data, config,
                        state_path=state, on_epoch=calls.append)
    assert calls == [] and again.stopped_early and again.best_epoch == first.best_epoch
    with pytest.raises(StaleTrainingState, match=r"state\.pt: saved by a different training run \(differs in: lr\)"):
        train_model(build_backbone("gru4rec", small_data.n_items, small_data.max_len), small_data,
                    TrainConfig(epochs=30, patience=1, batch_size=16, progress=False, lr=0.1), state_path=state)
    with pytest.raises(StaleTrainingState, match="does not fit this model"):
        train_model(build_backbone("gru4rec", small_data.n_items, small_data.max_len, {"embedding_dim": 32}),
                    small_data, config, state_path=state)
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(StaleTrainingState, match="not a readable training state"):
        train_model(build_backbone("gru4rec", small_data.n_items, small_data.max_len), small_data, config, state_path=state)


def test_a_state_saved_for_another_experiment_or_subset_is_refused(small_data, tmp_path):
    """The caller's identity (run_method: the experiment and the data) and the training sub-sessions
    guard a state as the training configuration does; StaleTrainingState is a ConfigError."""
    config = TrainConfig(epochs=1, patience=0, batch_size=16, progress=False)
    state = tmp_path / "state.pt"

    def model():
        return build_backbone("gru4rec", small_data.n_items, small_data.max_len)

    train_model(model(), small_data, config, state_path=state, state_identity={"experiment": {"beta": 0.5}})
    with pytest.raises(StaleTrainingState, match="differs in: experiment"):
        train_model(model(), small_data, config, state_path=state, state_identity={"experiment": {"beta": 0.25}})
    subset, other = np.arange(0, small_data.n_sequences, 2), tmp_path / "subset.pt"
    train_model(model(), small_data, config, state_path=other, sequence_subset=subset)
    with pytest.raises(StaleTrainingState, match=r"differs in: training sub-sessions\)"):
        train_model(model(), small_data, config, state_path=other, sequence_subset=subset[::-1])
    assert issubclass(StaleTrainingState, ConfigError)


def test_training_uses_fused_adam_where_torch_has_it():
    from csrec.training import _adam

    params = [torch.nn.Parameter(torch.randn(4, 3))]
    optimiser = _adam(params, TrainConfig(lr=0.01), torch.device("cpu"))
    assert optimiser.defaults["fused"] is True and optimiser.defaults["lr"] == 0.01
    # The same update as the unfused Adam, to float rounding.
    reference = [torch.nn.Parameter(params[0].detach().clone())]
    unfused = torch.optim.Adam(reference, lr=0.01)
    for _ in range(3):
        for p, opt in ((params[0], optimiser), (reference[0], unfused)):
            opt.zero_grad()
            (p ** 2).sum().backward()
            opt.step()
    torch.testing.assert_close(params[0], reference[0], rtol=1e-6, atol=1e-7)


def test_a_state_saved_before_an_option_existed_continues_at_its_default(small_data, tmp_path):
    """A state written by a csrec without some TrainConfig field continues when that field is at
    its default (the state was trained that way) and is refused when it is set elsewhere."""
    config = TrainConfig(epochs=2, patience=0, batch_size=16, progress=False)
    state = tmp_path / "state.pt"

    def model():
        return build_backbone("gru4rec", small_data.n_items, small_data.max_len)

    first = train_model(model(), small_data, TrainConfig(epochs=1, patience=0, batch_size=16, progress=False),
                        state_path=state)
    saved = torch.load(state, weights_only=False)
    assert saved["identity"]["config"].pop("grad_clip", "absent") is None  # as if grad_clip were new
    torch.save(saved, state)
    with pytest.raises(StaleTrainingState, match=r"differs in: grad_clip\)"):
        train_model(model(), small_data, TrainConfig(epochs=2, patience=0, batch_size=16, progress=False, grad_clip=1.0),
                    state_path=state)
    calls = []
    resumed = train_model(model(), small_data, config, state_path=state, on_epoch=calls.append)
    assert [c.epoch for c in calls] == [2]  # continued after epoch 1, not restarted
    assert resumed.history[0].train_loss == first.history[0].train_loss


def test_the_soft_label_cache_budget_is_a_resource_not_an_identity(small_data, tmp_path):
    """A saved state continues under another soft_label_cache_gib (test_teachers.py: nor does it
    change a teacher's pool key)."""
    state = tmp_path / "state.pt"
    train_model(build_backbone("gru4rec", small_data.n_items, small_data.max_len), small_data,
                TrainConfig(epochs=1, patience=0, batch_size=16, progress=False), state_path=state)
    calls = []
    train_model(build_backbone("gru4rec", small_data.n_items, small_data.max_len), small_data,
                TrainConfig(epochs=2, patience=0, batch_size=16, progress=False, soft_label_cache_gib=0.0),
                state_path=state, on_epoch=calls.append)
    assert [c.epoch for c in calls] == [2]
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match=f"soft_label_cache_gib must be a finite number >= 0, got {bad}"):
            TrainConfig(soft_label_cache_gib=bad).validate()
