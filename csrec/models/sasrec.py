"""SASRec (Kang & McAuley, ICDM 2018) as configured by the CSRec authors.

Follows the authors' ``models/SASrec.py`` (RecBole's SASRec): 64-d items plus learned absolute
positions, LayerNorm then dropout on the sum, and post-LN transformer blocks (attention, then a
ReLU feed-forward of width 128, each with dropout, a residual connection and LayerNorm, eps 1e-12).
Settings are the paper's §4.1.4: 2 blocks, 2 heads, dropout 0.3 (the authors' configs use 0.35).
Items are scored against the tied item table.

The authors combine a causal mask with a key-padding mask.  Batches here are right-padded, so the
keys a real position t may see (j <= t) are all real, and the causal mask alone gives the same
result at every real position.  Using it alone also keeps padded query rows finite (each still
sees key 0), so no NaN ever reaches the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from csrec.models.base import BackboneConfig, SequentialRecommender, register


@dataclass
class SASRecConfig(BackboneConfig):
    embedding_dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_dim: int = 128
    dropout: float = 0.3  # hidden dropout (paper 0.3; the authors' configs 0.35)
    attention_dropout: float = 0.3  # on the attention probabilities
    layer_norm_eps: float = 1e-12


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        d = config.embedding_dim
        if d % config.num_heads:
            raise ValueError(f"embedding_dim {d} is not divisible by num_heads {config.num_heads}")
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(d, 3 * d)  # query, key and value projections in one matmul
        self.proj = nn.Linear(d, d)
        self.attention_dropout = config.attention_dropout
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        # [B, T, d] -> [B, heads, T, d / heads]
        q, k, v = (t.view(B, T, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.attention_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B, T, d)
        return self.dropout(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.embedding_dim, config.inner_dim)
        self.fc2 = nn.Linear(config.inner_dim, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.relu(self.fc1(x))))


class Block(nn.Module):
    """Post-LN transformer block, as in the authors' (and the original SASRec's) encoder."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.attention = CausalSelfAttention(config)
        self.ln1 = nn.LayerNorm(config.embedding_dim, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ln2 = nn.LayerNorm(config.embedding_dim, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attention(x))
        return self.ln2(x + self.ffn(x))


@register("sasrec", SASRecConfig)
class SASRec(SequentialRecommender):
    def __init__(self, n_items: int, max_len: int, config: SASRecConfig):
        super().__init__(n_items, max_len, config)
        d = config.embedding_dim
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        # Positions count from the left: with right padding, position 0 is the first item, so a
        # prefix gets the same positions whether or not more items follow it.
        self.position_embedding = nn.Embedding(max_len, d)
        self.ln = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))

        # The authors' (BERT-style) init.  It also overwrites the padding row, which then stays
        # random but untrained; it only ever appears as logit column 0.
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        T = items.shape[1]
        if T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.max_len}")
        positions = torch.arange(T, device=items.device)
        x = self.dropout(self.ln(self.item_embedding(items) + self.position_embedding(positions)))
        for block in self.blocks:
            x = block(x)
        return x

    def output_table(self) -> torch.Tensor:
        return self.item_embedding.weight
