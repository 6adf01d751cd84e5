"""Shape, causality, padding, training and registry checks for every backbone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from csrec.models import backbone_names, build_backbone, make_backbone_config

N_ITEMS = 50
MAX_LEN = 10
NAMES = ["gru4rec", "narm", "nextitnet", "sasrec"]


def _build(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_backbone(name, n_items=N_ITEMS, max_len=MAX_LEN, config=overrides or None)


def _random_items(batch: int = 4, length: int = MAX_LEN, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, N_ITEMS + 1, (batch, length), generator=g)


def test_all_backbones_registered():
    assert set(NAMES) <= set(backbone_names())


@pytest.mark.parametrize("name", NAMES)
def test_encode_shapes(name):
    model = _build(name)
    d = model.config.embedding_dim
    items = _random_items()
    hidden = model.encode(items)
    assert hidden.shape == (4, MAX_LEN, d)
    assert hidden.dtype == torch.float32
    assert model.output_table().shape == (N_ITEMS + 1, d)
    assert model.score(hidden).shape == (4, MAX_LEN, N_ITEMS + 1)
    assert model.causal


@pytest.mark.parametrize("name", NAMES)
def test_causality(name):
    model = _build(name).eval()
    items = _random_items()
    with torch.no_grad():
        base = model.encode(items)
        for t in range(MAX_LEN - 1):
            changed = items.clone()
            changed[:, t + 1 :] = _random_items(seed=100 + t)[:, t + 1 :]
            out = model.encode(changed)
            torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=1e-5, atol=1e-6)
            # The change must matter somewhere later, or the check above proves nothing.
            assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])


@pytest.mark.parametrize("name", NAMES)
def test_right_padding_matches_unpadded(name):
    model = _build(name).eval()
    items = _random_items(batch=3)
    lengths = torch.tensor([MAX_LEN, 4, 1])
    padded = items.clone()
    for b, n in enumerate(lengths.tolist()):
        padded[b, n:] = 0
    with torch.no_grad():
        last = model.last_representation(padded, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone = model.encode(items[b : b + 1, :n])[0, -1]
            torch.testing.assert_close(last[b], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_padded_rows_finite_and_grads_finite(name):
    model = _build(name).train()
    items = _random_items()
    items[1, 3:] = 0
    items[2, 1:] = 0
    targets = torch.roll(items, -1, dims=1)
    targets[:, -1] = 0
    targets[items == 0] = 0
    assert torch.isfinite(model.encode(items)).all()  # padded rows included
    reps, tgt = model.training_representations(items, targets)
    assert reps.shape[0] == tgt.shape[0] == int((targets > 0).sum())
    loss = F.cross_entropy(model.score(reps), tgt)
    extra = model.extra_loss()
    if extra is not None:
        loss = loss + extra
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_training_reduces_loss(name):
    # A deterministic next-item rule: item i is followed by item (i mod N) + 1.
    model = _build(name)
    starts = torch.randint(1, N_ITEMS + 1, (32, 1), generator=torch.Generator().manual_seed(3))
    seqs = (starts - 1 + torch.arange(MAX_LEN + 1)) % N_ITEMS + 1
    inputs, targets = seqs[:, :-1], seqs[:, 1:]

    def loss_fn():
        reps, tgt = model.training_representations(inputs, targets)
        return F.cross_entropy(model.score(reps), tgt)

    model.eval()
    with torch.no_grad():
        before = loss_fn().item()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = loss_fn().item()
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model(name):
    items = _random_items()
    a, b = _build(name, seed=7).eval(), _build(name, seed=7).eval()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        assert torch.equal(va, vb)
    with torch.no_grad():
        assert torch.equal(a.encode(items), b.encode(items))
    c = _build(name, seed=8).eval()
    with torch.no_grad():
        assert not torch.equal(a.encode(items), c.encode(items))


def test_config_overrides():
    config = make_backbone_config("gru4rec", {"num_layers": 1, "dropout": 0.0})
    assert config.num_layers == 1 and config.dropout == 0.0 and config.embedding_dim == 64
    model = build_backbone("sasrec", n_items=N_ITEMS, max_len=MAX_LEN, config={"num_heads": 4})
    assert model.config.num_heads == 4


def test_unknown_config_key_lists_valid_params():
    with pytest.raises(ValueError, match="bogus") as err:
        make_backbone_config("gru4rec", {"bogus": 1})
    for param in ("embedding_dim", "hidden_dim", "num_layers", "dropout"):
        assert param in str(err.value)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="nope") as err:
        build_backbone("nope", n_items=N_ITEMS, max_len=MAX_LEN)
    for name in NAMES:
        assert name in str(err.value)


def test_paper_defaults():
    assert make_backbone_config("gru4rec").num_layers == 2
    assert make_backbone_config("gru4rec").dropout == 0.5
    narm = make_backbone_config("narm")
    assert (narm.hidden_dim, narm.num_layers) == (128, 1)
    nin = make_backbone_config("nextitnet")
    assert (nin.kernel_size, nin.num_blocks, tuple(nin.dilations)) == (3, 5, (1,))
    sas = make_backbone_config("sasrec")
    assert (sas.num_layers, sas.num_heads, sas.dropout) == (2, 2, 0.3)
    for name in NAMES:
        assert make_backbone_config(name).embedding_dim == 64


def test_nextitnet_extra_loss():
    model = _build("nextitnet")
    reg = model.extra_loss()
    assert reg.dim() == 0 and reg.item() > 0 and reg.requires_grad
    reg.backward()
    assert model.item_embedding.weight.grad is not None
    assert model.residual_blocks[0].conv1.weight.grad is not None
    # Unsquared norms times reg_weight, as the authors compute it.
    expected = model.item_embedding.weight.norm() + model.final_layer.weight.norm()
    expected = expected + sum(
        p.norm() for n, p in model.residual_blocks.named_parameters() if n.endswith("weight")
    )
    torch.testing.assert_close(reg, model.config.reg_weight * expected)
    for name in ("gru4rec", "narm", "sasrec"):
        assert _build(name).extra_loss() is None


def test_sasrec_rejects_too_long_sequence():
    model = _build("sasrec")
    with pytest.raises(ValueError, match="max_len"):
        model.encode(_random_items(length=MAX_LEN + 1))
