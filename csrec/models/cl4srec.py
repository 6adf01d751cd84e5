"""CL4SRec (Xie et al., ICDE 2022): SASRec plus a contrastive objective, as a CSRec student and teacher.

The encoder is csrec's SASRec unchanged (64-d, 2 blocks, 2 heads, the same dropout), with one
extra input row: a [mask] token, id ``n_items + 1``, used only by the "mask" augmentation (the
output table stays rows 0..n_items, so [mask] is never a candidate).

The contrastive task, in training mode only: every training sequence in the batch (the inputs of
the sub-session's training part) gets two augmented views, each made by one of three operators
picked uniformly at random per sequence and view —

* crop:    a random contiguous window of ⌈η·L⌉ items (η = ``crop_ratio``; the paper writes ⌊η·L⌋,
           the ceiling keeps a length-1 sequence non-empty);
* mask:    ⌊γ·L⌋ random positions replaced by [mask] (γ = ``mask_ratio``), length unchanged;
* reorder: a random window of ⌊β·L⌋ items shuffled in place (β = ``reorder_ratio``), length and
           item multiset unchanged —

all built with tensor ops for the whole batch at once.  Each view's representation is SASRec's
state at its last real item; InfoNCE over the 2B views of the batch (positive: the other view of
the same sequence; negatives: the other 2B - 2 views; dot-product similarity / ``cl_temperature``),
times λ = ``cl_weight``, is returned by :meth:`CL4SRec.extra_loss`.  The ratios default to the
public CL4SRec implementations' (η 0.6, γ 0.3, β 0.6).

In CSRec, CL4SRec is causal like SASRec: ``training_representations`` is SASRec's (one pass, the
state at every position with a target), so the CE — and a student's KL to the soft labels — apply
to the next-item targets only, while the contrastive term rides along through ``extra_loss()``.
As a teacher (eval mode) it is exactly a SASRec teacher: no augmentation, deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from csrec.models.base import register
from csrec.models.sasrec import SASRec, SASRecConfig

CROP, MASK, REORDER = 0, 1, 2


@dataclass
class CL4SRecConfig(SASRecConfig):
    cl_weight: float = 0.1  # λ
    cl_temperature: float = 1.0  # τ of InfoNCE
    crop_ratio: float = 0.6  # η
    mask_ratio: float = 0.3  # γ
    reorder_ratio: float = 0.6  # β


@register("cl4srec", CL4SRecConfig)
class CL4SRec(SASRec):
    def __init__(self, n_items: int, max_len: int, config: CL4SRecConfig):
        super().__init__(n_items, max_len, config)
        for name in ("crop_ratio", "mask_ratio", "reorder_ratio"):
            if not 0.0 <= getattr(config, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(config, name)}")
        self.mask_id = n_items + 1
        # SASRec's table plus the [mask] row the mask augmentation feeds in.
        self.item_embedding = nn.Embedding(n_items + 2, config.embedding_dim, padding_idx=0)
        self._init_weights(self.item_embedding)
        self._cl_loss: torch.Tensor | None = None

    def output_table(self) -> torch.Tensor:
        return self.item_embedding.weight[: self.n_items + 1]

    # --- augmentations (right-padded [B, T] in, right-padded [B, T] out) -------------------------
    def crop(self, items: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        lengths = (items > 0).sum(1)
        keep = torch.ceil(self.config.crop_ratio * lengths).long().clamp(min=1)
        start = (torch.rand(len(items), device=items.device, generator=generator) * (lengths - keep + 1)).long()
        positions = torch.arange(items.shape[1], device=items.device)
        source = (start.unsqueeze(1) + positions).clamp(max=items.shape[1] - 1)
        return items.gather(1, source) * (positions < keep.unsqueeze(1))

    def mask(self, items: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        real = items > 0
        lengths = real.sum(1)
        count = torch.floor(self.config.mask_ratio * lengths).long()
        # A random rank for each real position; the `count` lowest ranks are masked.
        scores = torch.rand(items.shape, device=items.device, generator=generator).masked_fill(~real, 2.0)
        ranks = scores.argsort(1).argsort(1)
        return items.masked_fill(ranks < count.unsqueeze(1), self.mask_id)

    def reorder(self, items: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        lengths = (items > 0).sum(1)
        size = torch.floor(self.config.reorder_ratio * lengths).long()
        start = (torch.rand(len(items), device=items.device, generator=generator) * (lengths - size + 1)).long()
        positions = torch.arange(items.shape[1], device=items.device).expand_as(items)
        inside = (positions >= start.unsqueeze(1)) & (positions < (start + size).unsqueeze(1))
        # Sort keys: a position outside the window keeps its own index; one inside gets a random
        # key in [start, start + size - 1), so sorting shuffles the window and fixes the rest.
        u = torch.rand(items.shape, device=items.device, generator=generator)
        window_key = start.unsqueeze(1) + u * (size.unsqueeze(1) - 1).clamp(min=0)
        keys = torch.where(inside, window_key, positions.float())
        return items.gather(1, keys.argsort(dim=1, stable=True))

    def augment(self, items: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One view per sequence, its operator chosen uniformly at random per sequence."""
        choice = torch.randint(0, 3, (len(items), 1), device=items.device, generator=generator)
        views = (self.crop(items, generator), self.mask(items, generator), self.reorder(items, generator))
        out = torch.where(choice == CROP, views[CROP], views[MASK])
        return torch.where(choice == REORDER, views[REORDER], out)

    # --- the contrastive loss -----------------------------------------------------------------------
    def contrastive_loss(self, items: torch.Tensor) -> torch.Tensor | None:
        items = items[(items > 0).any(1)]
        B = len(items)
        if B < 2:
            return None  # no negatives
        views = torch.cat([self.augment(items), self.augment(items)])  # [2B, T]
        lengths = (views > 0).sum(1)
        z = self.encode(views)[torch.arange(2 * B, device=items.device), lengths - 1]  # [2B, d]
        sim = (z @ z.t()) / self.config.cl_temperature
        sim = sim.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=items.device), -math.inf)
        positive = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(items.device)
        return F.cross_entropy(sim, positive)

    def training_representations(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SASRec's next-item representations; in training mode also the contrastive loss."""
        self._cl_loss = None
        if self.training and self.config.cl_weight > 0:
            loss = self.contrastive_loss(inputs)
            self._cl_loss = None if loss is None else self.config.cl_weight * loss
        return super().training_representations(inputs, targets)

    def extra_loss(self) -> torch.Tensor | None:
        """λ · InfoNCE of the last training-mode :meth:`training_representations` call."""
        return self._cl_loss if self.training else None
