"""BERT4Rec, SR-GNN, CL4SRec and DreamRec: the interface contract, their own mechanics, tiny fits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import csrec
from csrec.data import SyntheticConfig
from csrec.models import backbone_class, backbone_names, build_backbone, make_backbone_config
from csrec.models.dreamrec import beta_schedule
from csrec.models.srgnn import session_graph

N_ITEMS = 50
MAX_LEN = 10
NAMES = ["bert4rec", "srgnn", "cl4srec", "dreamrec"]
NON_CAUSAL = ["bert4rec", "srgnn", "dreamrec"]


def _build(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_backbone(name, n_items=N_ITEMS, max_len=MAX_LEN, config=overrides or None)


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs of lengths 9, 5, 1, 7 and their next-item targets (0 = none)."""
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(1, N_ITEMS + 1, (4, MAX_LEN), generator=g)
    for b, n in enumerate([MAX_LEN, 6, 2, 8]):  # sequence lengths: inputs are all but the last item
        seqs[b, n:] = 0
    inputs, targets = seqs[:, :-1].clone(), seqs[:, 1:].clone()
    inputs[targets == 0] = 0
    return inputs, targets


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    config = csrec.DataConfig(
        name="synthetic",
        synthetic=SyntheticConfig(n_users=80, n_items=50, n_clusters=5, mean_length=12),
        cache_dir=str(tmp_path_factory.mktemp("new-backbones")),
    )
    return csrec.load_dataset(config)


# --- the contract every backbone keeps -------------------------------------------------------------
def test_registered_with_paper_defaults():
    assert set(NAMES) <= set(backbone_names())
    for name in NON_CAUSAL:
        assert not backbone_class(name).causal
    assert backbone_class("cl4srec").causal  # SASRec's encoder
    bert = make_backbone_config("bert4rec")
    assert (bert.embedding_dim, bert.num_layers, bert.num_heads, bert.dropout) == (64, 2, 2, 0.5)
    assert bert.mask_prob == 0.2
    cl = make_backbone_config("cl4srec")
    assert (cl.embedding_dim, cl.num_layers, cl.cl_weight, cl.cl_temperature) == (64, 2, 0.1, 1.0)
    dream = make_backbone_config("dreamrec")
    assert (dream.embedding_dim, dream.dropout, dream.initializer_range) == (64, 0.1, 0.02)
    assert (dream.timesteps, dream.beta_start, dream.beta_end) == (500, 1e-4, 0.02)
    assert make_backbone_config("srgnn").num_steps == 1


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward(name):
    model = _build(name).train()
    inputs, targets = _batch()
    reps, ids = model.training_representations(inputs, targets)
    assert reps.shape == (int((targets > 0).sum()), 64)
    assert model.output_table().shape == (N_ITEMS + 1, 64)
    logits = model.item_scores(reps)
    assert logits.shape == (len(ids), N_ITEMS)
    loss = F.cross_entropy(logits, ids - 1)
    extra = model.extra_loss()
    if name in ("bert4rec", "cl4srec"):
        assert extra is not None and extra.requires_grad and torch.isfinite(extra)
    if extra is not None:
        loss = loss + extra
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_training_representations_rows_are_row_major_targets(name):
    model = _build(name)
    inputs, targets = _batch()
    for mode in (True, False):
        model.train(mode)
        reps, ids = model.training_representations(inputs, targets)
        assert reps.shape[0] == int((targets > 0).sum())
        assert ids.tolist() == targets[targets > 0].tolist()
    # In eval mode, row k is the next-item representation of the k-th prefix in row-major order.
    model.eval()
    with torch.no_grad():
        reps, _ = model.training_representations(inputs, targets)
        k = 0
        for b in range(inputs.shape[0]):
            for t in range(inputs.shape[1]):
                if targets[b, t] > 0:
                    alone = model.last_representation(inputs[b : b + 1, : t + 1], torch.tensor([t + 1]))
                    torch.testing.assert_close(reps[k], alone[0], rtol=1e-4, atol=1e-5)
                    k += 1
    assert k == len(reps)


@pytest.mark.parametrize("name", NAMES)
def test_training_reduces_loss(name):
    # A deterministic next-item rule: item i is followed by item (i mod N) + 1.  The eval-mode loss
    # is the one that matters (for DreamRec it scores the generated x0, not the denoised target).
    model = _build(name)
    starts = torch.randint(1, N_ITEMS + 1, (32, 1), generator=torch.Generator().manual_seed(3))
    seqs = (starts - 1 + torch.arange(MAX_LEN + 1)) % N_ITEMS + 1
    inputs, targets = seqs[:, :-1], seqs[:, 1:]

    def loss_fn():
        reps, ids = model.training_representations(inputs, targets)
        loss = F.cross_entropy(model.item_scores(reps), ids - 1)
        extra = model.extra_loss()
        return loss if extra is None else loss + extra

    model.eval()
    with torch.no_grad():
        before = loss_fn().item()
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        optimiser.zero_grad()
        loss_fn().backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        after = loss_fn().item()
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_deterministic_for_teachers(name):
    model = _build(name).eval()
    inputs, targets = _batch()
    with torch.no_grad():
        first, _ = model.training_representations(inputs, targets)
        torch.manual_seed(123)  # global RNG state must not matter
        second, _ = model.training_representations(inputs, targets)
        last_a = model.last_representation(inputs, (inputs > 0).sum(1))
        last_b = model.last_representation(inputs, (inputs > 0).sum(1))
    assert torch.equal(first, second)
    assert torch.equal(last_a, last_b)
    assert model.extra_loss() is None  # no auxiliary loss outside training


@pytest.mark.parametrize("name", NAMES)
def test_tiny_fit_base_and_csrec_m(tiny_data, name):
    common = dict(epochs=1, batch_size=32, progress=False, device="cpu", data=tiny_data)
    base = csrec.fit("synthetic", name, **common)
    assert math.isfinite(base.history[0]["train_loss"])
    assert 0.0 <= base.metrics["ndcg@10"] <= 1.0
    # CSRec-M with two teachers: teachers train, the store is built, the student reads it.
    distilled = csrec.fit("synthetic", name, "csrec-m", num_teachers=2, **common)
    assert len(distilled.teachers) == 2
    assert "kl" in distilled.history[0]["extra"]
    assert math.isfinite(distilled.history[0]["train_loss"])
    assert 0.0 <= distilled.metrics["ndcg@10"] <= 1.0


# --- BERT4Rec --------------------------------------------------------------------------------------
def test_bert4rec_masking_statistics():
    model = _build("bert4rec")
    items = torch.randint(1, N_ITEMS + 1, (4000, MAX_LEN), generator=torch.Generator().manual_seed(0))
    items[::2, 6:] = 0  # some padding, which is never selected
    corrupted, selected = model.cloze_mask(items, generator=torch.Generator().manual_seed(1))
    real = items > 0
    assert not (selected & ~real).any()
    assert torch.equal(corrupted[~real], items[~real])
    assert torch.equal(corrupted[~selected], items[~selected])  # unselected positions untouched
    n = int(selected.sum())
    assert n / int(real.sum()) == pytest.approx(model.config.mask_prob, abs=0.01)
    chosen, original = corrupted[selected], items[selected]
    masked = chosen == model.mask_id
    kept = chosen == original
    randomised = ~masked & ~kept
    assert masked.float().mean().item() == pytest.approx(0.8, abs=0.02)
    # A random replacement equals the original with probability 1 / N_ITEMS.
    assert kept.float().mean().item() == pytest.approx(0.1 + 0.1 / N_ITEMS, abs=0.015)
    assert randomised.float().mean().item() == pytest.approx(0.1 - 0.1 / N_ITEMS, abs=0.015)
    assert ((chosen[randomised] >= 1) & (chosen[randomised] <= N_ITEMS)).all()


def test_bert4rec_appends_mask_and_never_ranks_it():
    model = _build("bert4rec").eval()
    assert model.item_embedding.weight.shape[0] == N_ITEMS + 2
    inputs, _ = _batch()
    lengths = (inputs > 0).sum(1)
    appended = model._append_mask(inputs, lengths)
    assert (appended[torch.arange(4), lengths] == model.mask_id).all()
    assert model.item_scores(model.last_representation(inputs, lengths)).shape == (4, N_ITEMS)
    assert model.output_bias().shape == (N_ITEMS + 1,)


@pytest.mark.parametrize("n_rows", [1, 2, 7])
def test_bert4rec_packed_prefixes_equal_one_per_row(n_rows):
    model = _build("bert4rec").eval()
    g = torch.Generator().manual_seed(n_rows)
    lengths = torch.randint(1, MAX_LEN + 1, (n_rows,), generator=g)
    items = torch.randint(1, N_ITEMS + 1, (n_rows, MAX_LEN), generator=g)
    items[torch.arange(MAX_LEN) >= lengths.unsqueeze(1)] = 0
    with torch.no_grad():
        torch.testing.assert_close(
            model.packed_last_representation(items, lengths), model.last_representation(items, lengths),
            rtol=1e-4, atol=1e-5,
        )


def test_bert4rec_cloze_only_in_training():
    model = _build("bert4rec", mask_prob=1.0, cloze_weight=2.0).train()
    inputs, targets = _batch()
    model.training_representations(inputs, targets)
    assert model.extra_loss() is not None and model.extra_loss().item() > 0
    model.eval()
    model.training_representations(inputs, targets)
    assert model.extra_loss() is None


# --- SR-GNN ----------------------------------------------------------------------------------------
def test_srgnn_session_graph_by_hand():
    # [5, 3, 5, 7]: nodes (sorted unique) 3, 5, 7; edges 5→3, 3→5, 5→7.
    items = torch.tensor([[5, 3, 5, 7, 0, 0], [2, 2, 4, 0, 0, 0]])
    nodes, alias, a_in, a_out = session_graph(items)
    assert nodes[0].tolist() == [3, 5, 7, 0, 0, 0]
    assert alias[0, :4].tolist() == [1, 0, 1, 2]
    # A_in[i, j] = A[j, i] / in-degree(i): 3 ← 5, 5 ← 3, 7 ← 5 (each in-degree 1).
    expected_in = torch.zeros(6, 6)
    expected_in[0, 1] = expected_in[1, 0] = expected_in[2, 1] = 1.0
    # A_out[i, j] = A[i, j] / out-degree(i): 3 → 5; 5 → 3 and 5 → 7 (out-degree 2); 7 → nothing.
    expected_out = torch.zeros(6, 6)
    expected_out[0, 1] = 1.0
    expected_out[1, 0] = expected_out[1, 2] = 0.5
    torch.testing.assert_close(a_in[0], expected_in)
    torch.testing.assert_close(a_out[0], expected_out)
    # Second row, built in the same call: [2, 2, 4] → nodes 2, 4; a self-loop 2→2 and 2→4.
    assert nodes[1].tolist() == [2, 4, 0, 0, 0, 0]
    assert alias[1, :3].tolist() == [0, 0, 1]
    expected_in = torch.zeros(6, 6)
    expected_in[0, 0] = expected_in[1, 0] = 1.0
    expected_out = torch.zeros(6, 6)
    expected_out[0, 0] = expected_out[0, 1] = 0.5
    torch.testing.assert_close(a_in[1], expected_in)
    torch.testing.assert_close(a_out[1], expected_out)


def test_srgnn_repeated_edges_count_once():
    _, _, a_in, a_out = session_graph(torch.tensor([[1, 2, 1, 2, 1]]))
    # Edges 1→2 and 2→1, each repeated: every normalised entry is 1.
    torch.testing.assert_close(a_out[0, :2, :2], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    torch.testing.assert_close(a_in[0, :2, :2], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


# --- CL4SRec ---------------------------------------------------------------------------------------
def _cl_sequences() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    items = torch.randint(1, N_ITEMS + 1, (200, MAX_LEN), generator=g)
    lengths = torch.randint(1, MAX_LEN + 1, (200,), generator=g)
    items[torch.arange(MAX_LEN) >= lengths.unsqueeze(1)] = 0
    return items, lengths


def test_cl4srec_crop():
    model = _build("cl4srec")
    items, lengths = _cl_sequences()
    out = model.crop(items, torch.Generator().manual_seed(0))
    new_lengths = (out > 0).sum(1)
    assert new_lengths.tolist() == [math.ceil(model.config.crop_ratio * n) for n in lengths.tolist()]
    for b in range(len(items)):
        window, seq = out[b, : new_lengths[b]].tolist(), items[b, : lengths[b]].tolist()
        assert any(seq[s : s + len(window)] == window for s in range(len(seq) - len(window) + 1))
        assert (out[b, new_lengths[b] :] == 0).all()  # still right-padded


def test_cl4srec_mask():
    model = _build("cl4srec")
    items, lengths = _cl_sequences()
    out = model.mask(items, torch.Generator().manual_seed(0))
    assert torch.equal(out > 0, items > 0)  # same length and positions
    masked = out == model.mask_id
    assert masked.sum(1).tolist() == [math.floor(model.config.mask_ratio * n) for n in lengths.tolist()]
    assert torch.equal(out[~masked], items[~masked])


def test_cl4srec_reorder():
    model = _build("cl4srec")
    items, lengths = _cl_sequences()
    out = model.reorder(items, torch.Generator().manual_seed(0))
    assert torch.equal(out > 0, items > 0)
    assert torch.equal(out.sort(1).values, items.sort(1).values)  # same multiset per row
    changed = 0
    for b in range(len(items)):
        diff = (out[b] != items[b]).nonzero().flatten()
        if len(diff):  # only one window of floor(β·L) positions may move
            assert diff.max() - diff.min() < math.floor(model.config.reorder_ratio * lengths[b])
            changed += 1
    assert changed > 50


def test_cl4srec_augment_and_contrastive_loss():
    model = _build("cl4srec").train()
    items, lengths = _cl_sequences()
    views = model.augment(items, torch.Generator().manual_seed(0))
    assert views.shape == items.shape
    real_items = items[items > 0]
    assert ((views == model.mask_id) | (views == 0) | torch.isin(views, real_items)).all()
    loss = model.contrastive_loss(items[:32])
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    model.config.cl_weight = 0.0
    model.training_representations(*_batch())
    assert model.extra_loss() is None


# --- DreamRec --------------------------------------------------------------------------------------
def test_dreamrec_noise_schedule():
    model = _build("dreamrec")
    betas = model.betas.double()
    assert len(betas) == 500
    assert betas[0].item() == pytest.approx(1e-4, rel=1e-5)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-5)
    # DreamRec's exponential schedule: beta = 1 - exp(-lambda) with lambda linear in t.
    lam = -torch.log1p(-beta_schedule("exp", 500, 1e-4, 0.02))
    steps = lam[1:] - lam[:-1]
    assert torch.allclose(steps, torch.full_like(steps, steps.mean().item()), rtol=1e-6)
    alpha_bar = torch.cumprod(1 - beta_schedule("exp", 500, 1e-4, 0.02), 0)
    torch.testing.assert_close(model.sqrt_alpha_bar, alpha_bar.sqrt().float())
    torch.testing.assert_close(model.sqrt_one_minus_alpha_bar, (1 - alpha_bar).sqrt().float())
    assert alpha_bar[-1] < 0.01  # x_T is (nearly) pure noise
    # The geometric alternative: the same endpoints, a constant ratio.
    geometric = beta_schedule("geometric", 500, 1e-4, 0.02)
    assert geometric[0].item() == pytest.approx(1e-4) and geometric[-1].item() == pytest.approx(0.02)
    ratios = geometric[1:] / geometric[:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, (0.02 / 1e-4) ** (1 / 499)), rtol=1e-6)
    with pytest.raises(ValueError, match="beta_schedule"):
        beta_schedule("cosine", 500, 1e-4, 0.02)


def test_dreamrec_denoising_step_shapes():
    model = _build("dreamrec").eval()
    x0 = torch.randn(7, 64)
    t = torch.tensor([0, 1, 10, 100, 250, 498, 499])
    x_t = model.q_sample(x0, t, torch.randn(7, 64))
    c = torch.randn(7, 64)
    assert model.denoise(x_t, c, t).shape == (7, 64)
    x_prev, x0_hat = model.ddim_step(x_t, c, 499, 473)
    assert x_prev.shape == x0_hat.shape == (7, 64)
    assert model.generate(c).shape == (7, 64)
    assert model.sampling_timesteps() == [499]  # the default one-step sampler starts from pure noise
    schedule = _build("dreamrec", eval_steps=20).sampling_timesteps()
    assert len(schedule) == 20 and schedule[0] == 499 and schedule[-1] == 0
    assert _build("dreamrec", denoiser="mlp2").denoise(x_t, c, t).shape == (7, 64)
    full = _build("dreamrec", eval_steps=500)
    assert full.sampling_timesteps() == list(range(499, -1, -1))
    with pytest.raises(ValueError, match="eval_steps"):
        _build("dreamrec", eval_steps=501)


def test_dreamrec_training_uses_the_target_and_eval_does_not():
    model = _build("dreamrec")
    inputs, targets = _batch()
    other = targets.clone()
    other[other > 0] = other[other > 0] % N_ITEMS + 1
    model.eval()
    with torch.no_grad():
        # Generation reads only the history: a teacher's soft label never sees the answer.
        assert torch.equal(model.training_representations(inputs, targets)[0],
                           model.training_representations(inputs, other)[0])
        model.train()
        model.config.guidance_dropout = 0.0
        torch.manual_seed(0)
        a, _ = model.training_representations(inputs, targets)
        torch.manual_seed(0)
        b, _ = model.training_representations(inputs, other)
    assert not torch.allclose(a, b)
