"""NARM (Li et al., CIKM 2017) as configured by the CSRec authors, made causal.

Follows the authors' ``models/NARM.py`` (RecBole's NARM) with the paper's §4.1.4 settings: 64-d
embeddings, a 1-layer GRU with 128 hidden units and no biases, dropout 0.25 on the embeddings and
0.5 on the concatenated context, and a bias-free ``Linear(2 * hidden -> d)`` into the embedding
space, scored against the tied item table.

NARM's encoder reads the whole sequence and then attends from its last state.  Here every
position t plays the role of "last": the global context is the GRU state h_t and the local context
is c_t = sum_{j <= t, item_j != 0} alpha_tj h_j with alpha_tj = v^T sigmoid(A1 h_j + A2 h_t).  The
weights are not normalised (no softmax), as in NARM.  For the last real position this is exactly
the authors' model; for earlier positions it is what the authors' model computes on that prefix.
One pass therefore gives the representation of every prefix, like the other causal backbones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from csrec.models.base import BackboneConfig, SequentialRecommender, register


@dataclass
class NARMConfig(BackboneConfig):
    embedding_dim: int = 64
    hidden_dim: int = 128
    num_layers: int = 1
    embedding_dropout: float = 0.25
    context_dropout: float = 0.5


@register("narm", NARMConfig)
class NARM(SequentialRecommender):
    def __init__(self, n_items: int, max_len: int, config: NARMConfig):
        super().__init__(n_items, max_len, config)
        d, h = config.embedding_dim, config.hidden_dim
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(config.embedding_dropout)
        self.gru = nn.GRU(d, h, num_layers=config.num_layers, bias=False, batch_first=True)
        self.a_1 = nn.Linear(h, h, bias=False)  # applied to the attended states h_j
        self.a_2 = nn.Linear(h, h, bias=False)  # applied to the querying state h_t
        self.v_t = nn.Linear(h, 1, bias=False)
        self.ct_dropout = nn.Dropout(config.context_dropout)
        self.b = nn.Linear(2 * h, d, bias=False)

        # The authors' init: xavier-normal for the item table (padding row included: it stays
        # random but untrained) and every dense layer; the GRU keeps PyTorch's default.
        for module in (self.item_embedding, self.a_1, self.a_2, self.v_t, self.b):
            nn.init.xavier_normal_(module.weight)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        T = items.shape[1]
        states, _ = self.gru(self.emb_dropout(self.item_embedding(items)))  # [B, T, H]

        # scores[b, t, j] = v^T sigmoid(A1 h_j + A2 h_t), built as one [B, T, T, H] tensor
        # (T is at most a few dozen).  Since v has no bias, masking the score is the same as
        # masking inside v as the authors do.
        keys = self.a_1(states).unsqueeze(1)  # [B, 1, T, H], indexed by j
        queries = self.a_2(states).unsqueeze(2)  # [B, T, 1, H], indexed by t
        scores = self.v_t(torch.sigmoid(keys + queries)).squeeze(-1)  # [B, T, T]
        # Position t may attend to j <= t only (causality), and never to padding.
        causal = torch.ones(T, T, dtype=torch.bool, device=items.device).tril()
        mask = causal & (items > 0).unsqueeze(1)  # [B, T, T]
        alpha = scores * mask
        local = alpha @ states  # [B, T, H]

        context = torch.cat([local, states], dim=-1)  # [local, global], the authors' order
        return self.b(self.ct_dropout(context))

    def output_table(self) -> torch.Tensor:
        return self.item_embedding.weight
