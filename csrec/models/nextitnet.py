"""NextItNet (Yuan et al., WSDM 2019) as configured by the CSRec authors.

Follows the authors' ``models/NextItNet.py`` (RecBole's NextItNet) with the paper's §4.1.4
settings: 64 residual channels (= embedding size), kernel 3, 5 residual blocks of type (b), each
with base dilation 1.  A type-(b) block is two causal dilated convolutions (dilation d, then 2d),
each followed by LayerNorm and ReLU, plus a skip connection.  No dropout.  A final dense layer maps
each position's output to the embedding space, scored against the tied item table.

The authors also add an L2 penalty, the *unsquared* norm of each weight matrix times
``reg_weight``, to the training loss; :meth:`NextItNet.extra_loss` returns it.

The authors left-pad sequences; csrec right-pads.  Because every convolution here is causal
(zero-padded on the left inside the layer), an output at a real position never sees the padding
that follows it, so the two give the same representation of each prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from csrec.models.base import BackboneConfig, SequentialRecommender, register


@dataclass
class NextItNetConfig(BackboneConfig):
    embedding_dim: int = 64  # also the residual channel width
    kernel_size: int = 3
    num_blocks: int = 5
    dilations: tuple[int, ...] = (1,)  # repeated once per block, as the authors' ``dilations * block_num``
    reg_weight: float = 5e-6


class CausalConv1d(nn.Conv1d):
    """Conv1d over [B, C, T] that zero-pads only on the left, so output t sees inputs <= t."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__(channels, channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class ResidualBlock(nn.Module):
    """Residual block (b) of the NextItNet paper, which the authors use."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv1 = CausalConv1d(channels, kernel_size, dilation)
        self.ln1 = nn.LayerNorm(channels, eps=1e-8)
        # The second conv doubles the dilation, widening the receptive field within one block.
        self.conv2 = CausalConv1d(channels, kernel_size, 2 * dilation)
        self.ln2 = nn.LayerNorm(channels, eps=1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, C]
        out = self.conv1(x.transpose(1, 2)).transpose(1, 2)
        out = F.relu(self.ln1(out))
        out = self.conv2(out.transpose(1, 2)).transpose(1, 2)
        out = F.relu(self.ln2(out))
        return out + x


@register("nextitnet", NextItNetConfig)
class NextItNet(SequentialRecommender):
    def __init__(self, n_items: int, max_len: int, config: NextItNetConfig):
        super().__init__(n_items, max_len, config)
        d = config.embedding_dim
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        dilations = list(config.dilations) * config.num_blocks
        self.residual_blocks = nn.Sequential(
            *(ResidualBlock(d, config.kernel_size, dilation) for dilation in dilations)
        )
        self.final_layer = nn.Linear(d, d)

        # The authors' init: uniform(+-sqrt(1/N)) over the whole table (the padding row stays
        # random but untrained), xavier-normal dense layer with bias 0.1; convs keep the default.
        bound = math.sqrt(1.0 / n_items)
        nn.init.uniform_(self.item_embedding.weight, -bound, bound)
        nn.init.xavier_normal_(self.final_layer.weight)
        nn.init.constant_(self.final_layer.bias, 0.1)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.residual_blocks(self.item_embedding(items)))

    def output_table(self) -> torch.Tensor:
        return self.item_embedding.weight

    def extra_loss(self) -> torch.Tensor:
        # As the authors: reg_weight * (||E|| + ||W_final|| + sum of ||w|| over every residual-block
        # parameter whose name ends in "weight", i.e. the conv kernels and the LayerNorm gains).
        # The norms are not squared, so this is not the usual weight decay.
        norms = [self.item_embedding.weight.norm(2), self.final_layer.weight.norm(2)]
        norms += [
            p.norm(2) for name, p in self.residual_blocks.named_parameters() if name.endswith("weight")
        ]
        return self.config.reg_weight * torch.stack(norms).sum()
