"""BERT4Rec (Sun et al., CIKM 2019) with the paper's §4.1.4 settings, as a CSRec student and teacher.

Architecture (RecBole's BERT4Rec, which the CSRec authors build on): 64-d items plus learned
positions, LayerNorm then dropout on the sum, 2 bidirectional post-LN transformer blocks
with 2 heads and a GELU feed-forward of width 4·d, dropout 0.5.  A [MASK] token has id
``n_items + 1``, so the input table has ``n_items + 2`` rows.  The output head is BERT's:
``LayerNorm(GELU(Linear(h)))`` scored against the *tied* item table (rows 0..n_items of the input
table; the [MASK] row is never a candidate) plus a learned per-item output bias.  Positions are
counted back from the end of each input (the appended [MASK] is 0, the last item 1), as left
padding gives the original implementation; :meth:`BERT4Rec._positions_from_end` says why counting
from the left fails under csrec's splits.

Next-item prediction appends [MASK] after the history: for a sequence ``s_1..s_L`` the model reads
``s_1..s_L [MASK]`` and the head output at the mask position is the representation of "what comes
next".  This is also how RecBole's BERT4Rec predicts at test time.

How it acts in CSRec (the choice this file makes):

* **Next-item representations.**  ``training_representations`` returns, for every next-item target
  ``targets[b, t]``, the appended-mask representation of the prefix ``inputs[b, :t+1]``; each prefix
  is its own bidirectional forward (the model is not causal: position j sees the items after it,
  so one pass over the whole sequence cannot give the prefixes' predictions).  The prefixes are
  built with tensor ops and run as one batched forward.  The training loss's CE — and, for a
  student, the KL to the teachers' soft labels — therefore apply to exactly the next-item targets
  every other backbone trains on, in the same row order, so the soft-label store needs no special
  case.  To halve the padding, two prefixes share each forward row (shortest with longest, with
  block-diagonal attention and positions counted per segment; see
  :meth:`BERT4Rec.packed_last_representation`): the same numbers, 1.7x faster on one CPU thread.
  As a teacher (eval mode: no dropout, no masking) the same appended-mask representation of each
  prefix is what the store keeps, so a soft label is the teacher's next-item distribution.
* **Cloze.**  In training mode the same call also runs BERT4Rec's own objective on the whole
  training sequence (the inputs plus the last target): each real position is selected with
  probability ``mask_prob``; a selected position becomes [MASK] 80% of the time, a random item 10%
  and stays unchanged 10%; CE on the selected positions, times ``cloze_weight``, is returned by
  :meth:`BERT4Rec.extra_loss`.  Soft labels do *not* apply to the Cloze positions: those are
  interior positions that see the future, not next-item predictions, and the store has no row for
  them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from csrec.models.base import BackboneConfig, SequentialRecommender, register


# Dropout.  The paper (§4.1.4) gives 0.5, the default here; the authors' code uses 0.2 for both the
# hidden and the attention dropout.  On Last.FM (lr 3e-3, patience 10) 0.5 underfits: validation
# NDCG@10 0.0795, test Recall@10 12.92 % (paper 17.27 %), against 0.1052 and 16.51 % with 0.2 / 0.2
# (`python bench/lastfm_methods.py --backbones bert4rec --methods base --seeds 1`, and the same with
# `--model dropout=0.2 --model attention_dropout=0.2 --tag dropout02`).  The appended [MASK] sees
# the last item only through attention, so BERT4Rec learns next-item transitions more slowly than
# SASRec, and heavy dropout slows it further.  Choose it on validation: `--model dropout=0.2`.
@dataclass
class BERT4RecConfig(BackboneConfig):
    embedding_dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_dim: int = 256  # 4·d, as BERT and RecBole's BERT4Rec
    dropout: float = 0.5  # hidden dropout (paper §4.1.4)
    attention_dropout: float = 0.5  # on the attention probabilities
    layer_norm_eps: float = 1e-12
    mask_prob: float = 0.2  # Cloze: probability that a position is selected
    cloze_weight: float = 1.0  # weight of the Cloze loss added through extra_loss()


def expand_prefixes(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every prefix that has a next-item target, as its own right-padded row.

    Returns (prefixes LongTensor[N, W], lengths LongTensor[N], target ids LongTensor[N]) in
    row-major (sequence, position) order of ``targets > 0``, the soft-label store's row order.
    ``targets[b, t]`` follows ``inputs[b, :t+1]``, so that prefix has length t + 1.
    """
    rows, cols = (targets > 0).nonzero(as_tuple=True)  # nonzero is row-major
    if len(rows) == 0:
        return inputs.new_zeros(0, 1), cols, cols
    width = int(cols.max()) + 1
    keep = torch.arange(width, device=inputs.device) <= cols.unsqueeze(1)
    return inputs[rows, :width] * keep, cols + 1, targets[rows, cols]


class BidirectionalSelfAttention(nn.Module):
    def __init__(self, config: BERT4RecConfig):
        super().__init__()
        d = config.embedding_dim
        if d % config.num_heads:
            raise ValueError(f"embedding_dim {d} is not divisible by num_heads {config.num_heads}")
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.attention_dropout = config.attention_dropout
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """``attn_mask``: bool, [B, 1, 1, T] (keys) or [B, 1, T, T] (query x key); True = may attend."""
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (t.view(B, T, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        return self.dropout(self.proj(y.transpose(1, 2).reshape(B, T, d)))


class Block(nn.Module):
    """Post-LN transformer block with a GELU feed-forward, as BERT."""

    def __init__(self, config: BERT4RecConfig):
        super().__init__()
        d = config.embedding_dim
        self.attention = BidirectionalSelfAttention(config)
        self.ln1 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(d, config.inner_dim)
        self.fc2 = nn.Linear(config.inner_dim, d)
        self.dropout = nn.Dropout(config.dropout)
        self.ln2 = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attention(x, attn_mask))
        return self.ln2(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))


@register("bert4rec", BERT4RecConfig)
class BERT4Rec(SequentialRecommender):
    causal = False  # position t attends to later positions: each prefix needs its own forward

    def __init__(self, n_items: int, max_len: int, config: BERT4RecConfig):
        super().__init__(n_items, max_len, config)
        if not 0.0 <= config.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must lie in [0, 1], got {config.mask_prob}")
        d = config.embedding_dim
        self.mask_id = n_items + 1
        self.item_embedding = nn.Embedding(n_items + 2, d, padding_idx=0)  # + the [MASK] row
        # One more position than max_len: a full-length history plus the appended [MASK].
        self.position_embedding = nn.Embedding(max_len + 1, d)
        self.ln = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        # BERT's prediction head: transform, then the tied table plus a per-item bias.
        self.head = nn.Linear(d, d)
        self.head_ln = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        self.apply(self._init_weights)
        self._cloze_loss: torch.Tensor | None = None

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # BERT's init (truncated normal 0.02 in BERT; plain normal here, as RecBole).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # --- the encoder ---------------------------------------------------------------------------
    def _transform(self, items: torch.Tensor, positions: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """The transformer's outputs (before the prediction head) for explicit positions and mask."""
        x = self.dropout(self.ln(self.item_embedding(items) + self.position_embedding(positions)))
        for block in self.blocks:
            x = block(x, attn_mask)
        return x

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head_ln(F.gelu(self.head(hidden)))

    @staticmethod
    def _positions_from_end(items: torch.Tensor) -> torch.Tensor:
        """Position ids counted back from each row's last real token (0), padding 0.

        Training inputs are two items shorter than test inputs (the validation and test items are
        held out), so positions counted from the left would put the test-time [MASK] at positions
        no training example ever reached, leaving those embeddings untrained — and BERT4Rec finds
        the last item only through positions (Last.FM: validation NDCG@10 stuck near 1.5% while
        the training loss fell).  Counted from the end, the [MASK] is always 0 and the last item 1.
        """
        real = items > 0
        positions = real.sum(1, keepdim=True) - 1 - torch.arange(items.shape[1], device=items.device)
        return positions.clamp(min=0) * real

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Head outputs at every position of right-padded ``items`` (which may contain [MASK]).

        Bidirectional: position t depends on the whole row, so this is *not* a per-prefix encoding.
        """
        T = items.shape[1]
        if T > self.max_len + 1:
            raise ValueError(f"sequence length {T} exceeds max_len + 1 = {self.max_len + 1}")
        # Every query sees every real key, before and after it; padding keys are hidden.  Position
        # 0 is always real, so even padded query rows have a key and stay finite.
        key_mask = (items > 0)[:, None, None, :]
        return self._head(self._transform(items, self._positions_from_end(items), key_mask))

    def output_table(self) -> torch.Tensor:
        return self.item_embedding.weight[: self.n_items + 1]  # the [MASK] row is never an answer

    def output_bias(self) -> torch.Tensor:
        return self.bias

    # --- next-item prediction through an appended [MASK] ---------------------------------------------
    def _append_mask(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if items.shape[1] > self.max_len:
            raise ValueError(f"sequence length {items.shape[1]} exceeds max_len {self.max_len}")
        rows = torch.arange(items.shape[0], device=items.device)
        out = torch.cat([items, items.new_zeros(items.shape[0], 1)], dim=1)
        out[rows, lengths] = self.mask_id
        return out

    def last_representation(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = int(lengths.max())
        tokens = self._append_mask(items[:, :width], lengths)
        key_mask = (tokens > 0)[:, None, None, :]
        hidden = self._transform(tokens, self._positions_from_end(tokens), key_mask)
        return self._head(hidden[torch.arange(items.shape[0], device=items.device), lengths])

    def training_representations(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The appended-mask representation of every prefix with a target (see the module docstring).

        In training mode this also computes the Cloze loss that :meth:`extra_loss` returns.
        """
        self._cloze_loss = self._cloze(inputs, targets) if self.training else None
        prefixes, lengths, target_ids = expand_prefixes(inputs, targets)
        if len(target_ids) == 0:
            return self.item_embedding.weight.new_zeros(0, self.config.embedding_dim), target_ids
        return self.packed_last_representation(prefixes, lengths), target_ids

    def packed_last_representation(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """:meth:`last_representation` of many right-padded rows, computed two rows per forward row.

        A batch's prefixes have every length from 1 up, so one prefix per row would be about half
        padding.  Instead the shortest prefix shares a row with the longest, the second shortest
        with the second longest, and so on: [prefix_a, MASK, prefix_b, MASK, 0...].  Attention is
        block-diagonal (a segment sees only itself) and positions are counted within each segment,
        so each segment computes exactly what it would alone, with about half the tokens.
        """
        device = items.device
        tokens = self._append_mask(items[:, : int(lengths.max())], lengths)  # [N, W]
        W = tokens.shape[1]
        sizes = lengths + 1  # tokens per prefix, the [MASK] included
        N = len(sizes)
        order = sizes.argsort()
        half = (N + 1) // 2
        first = order[:half]  # shortest first
        second = order[half:].flip(0)  # longest first; one fewer when N is odd
        size_a = sizes[first]
        size_b = torch.zeros_like(size_a)
        size_b[: len(second)] = sizes[second]
        tokens_b = tokens.new_zeros(half, W)
        tokens_b[: len(second)] = tokens[second]
        width = int((size_a + size_b).max())
        j = torch.arange(width, device=device).expand(half, width)
        jb = j - size_a.unsqueeze(1)  # position inside segment b
        in_a = j < size_a.unsqueeze(1)
        in_b = ~in_a & (jb < size_b.unsqueeze(1))
        packed = torch.where(in_a, tokens[first].gather(1, j.clamp(max=W - 1)), 0)
        packed = torch.where(in_b, tokens_b.gather(1, jb.clamp(0, W - 1)), packed)
        # Positions counted back from each segment's [MASK], as in _positions_from_end.
        positions = torch.where(in_b, size_b.unsqueeze(1) - 1 - jb, 0)
        positions = torch.where(in_a, size_a.unsqueeze(1) - 1 - j, positions)
        segment = in_a.long() + 2 * in_b.long()  # 1 = a, 2 = b, 0 = padding
        attn_mask = (segment.unsqueeze(2) == segment.unsqueeze(1)) & (segment.unsqueeze(1) > 0)
        # Padding queries would see no key at all (NaN); let them see key 0 (unused, but finite).
        attn_mask[:, :, 0] |= segment == 0
        hidden = self._transform(packed, positions, attn_mask.unsqueeze(1))
        rows = torch.arange(half, device=device)
        head_a = self._head(hidden[rows, size_a - 1])
        paired = rows[: len(second)]
        head_b = self._head(hidden[paired, size_a[paired] + size_b[paired] - 1])
        # The head's dtype, which is bfloat16 under mixed precision (its last op is a product).
        out = head_a.new_empty(N, head_a.shape[-1])
        out[first] = head_a
        out[second] = head_b.to(out.dtype)
        return out

    # --- Cloze ------------------------------------------------------------------------------------
    def cloze_mask(
        self, items: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT's corruption of right-padded ``items``: returns (corrupted items, selected positions).

        Each real position is selected with probability ``mask_prob``; a selected position becomes
        [MASK] with probability 0.8, a uniformly random real item with 0.1, and is kept with 0.1.
        """
        device = items.device
        real = items > 0
        selected = real & (torch.rand(items.shape, device=device, generator=generator) < self.config.mask_prob)
        action = torch.rand(items.shape, device=device, generator=generator)
        random_items = torch.randint(1, self.n_items + 1, items.shape, device=device, generator=generator)
        corrupted = torch.where(selected & (action < 0.8), torch.full_like(items, self.mask_id), items)
        corrupted = torch.where(selected & (action >= 0.8) & (action < 0.9), random_items, corrupted)
        return corrupted, selected

    def _cloze(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        # The whole training sequence: the inputs plus their last target (the item after them).
        lengths = (inputs > 0).sum(1)
        rows = torch.arange(inputs.shape[0], device=inputs.device)
        full = torch.cat([inputs, inputs.new_zeros(inputs.shape[0], 1)], dim=1)
        full[rows, lengths] = targets[rows, (lengths - 1).clamp(min=0)] * (lengths > 0)
        corrupted, selected = self.cloze_mask(full)
        if not selected.any():
            return None
        key_mask = (corrupted > 0)[:, None, None, :]
        positions = self._positions_from_end(corrupted)
        hidden = self._head(self._transform(corrupted, positions, key_mask)[selected])
        return self.config.cloze_weight * F.cross_entropy(self.item_scores(hidden), full[selected] - 1)

    def extra_loss(self) -> torch.Tensor | None:
        """The Cloze loss of the last training-mode :meth:`training_representations` call."""
        return self._cloze_loss if self.training else None
