"""GRU4Rec (Hidasi et al., ICLR 2016) as configured by the CSRec authors.

Follows the authors' ``models/GRU4rec.py`` (itself RecBole's GRU4Rec) with the paper's §4.1.4
settings: 64-d embeddings, a 2-layer GRU without biases, dropout 0.5 on the input embeddings only
(no dropout between GRU layers), and a dense layer on every GRU output.  Items are scored against
the tied item-embedding table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from csrec.models.base import BackboneConfig, SequentialRecommender, register


@dataclass
class GRU4RecConfig(BackboneConfig):
    embedding_dim: int = 64
    hidden_dim: int = 64
    num_layers: int = 2
    dropout: float = 0.5  # on the input embeddings only, as the authors do


@register("gru4rec", GRU4RecConfig)
class GRU4Rec(SequentialRecommender):
    def __init__(self, n_items: int, max_len: int, config: GRU4RecConfig):
        super().__init__(n_items, max_len, config)
        d, h = config.embedding_dim, config.hidden_dim
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(d, h, num_layers=config.num_layers, bias=False, batch_first=True)
        # Maps the GRU state back to the embedding space, where it is dotted with the item table.
        self.dense = nn.Linear(h, d)

        # The authors' init: xavier-normal over the whole table (the padding row included: it ends
        # up random but, with padding_idx, never trained; it only ever appears as logit column 0),
        # and xavier-uniform on the first GRU layer only.  Everything else keeps PyTorch's default.
        nn.init.xavier_normal_(self.item_embedding.weight)
        nn.init.xavier_uniform_(self.gru.weight_ih_l0)
        nn.init.xavier_uniform_(self.gru.weight_hh_l0)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        # A unidirectional GRU is causal, and right padding sits after every real position, so
        # running it over the padded batch (no packing) gives every prefix's state.
        x = self.emb_dropout(self.item_embedding(items))
        out, _ = self.gru(x)
        return self.dense(out)

    def output_table(self) -> torch.Tensor:
        return self.item_embedding.weight
