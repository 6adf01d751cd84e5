"""The interface every backbone implements, and the registry that finds them by name.

Every backbone in csrec scores items the same way: a sequence representation ``h`` (width d)
dotted with an output table ``W`` (one row per item id, row 0 is padding), plus an optional
per-item bias.  Teachers and students share this interface, which is what lets the soft-label
store keep a teacher's per-target representation instead of |I| logits (see csrec.softlabels).

Batches are *right-padded*: ``items[b, :len_b]`` holds the sequence in time order and the rest is
0.  For a causal backbone, ``encode(items)[b, t]`` depends only on ``items[b, :t+1]``, so a single
forward pass yields the representation of every prefix of the sequence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from csrec.errors import ConfigError


@dataclass
class BackboneConfig:
    """Hyperparameters shared by all backbones; each backbone subclasses this with its own."""

    embedding_dim: int = 64


class SequentialRecommender(nn.Module):
    """Base class of all backbones.

    Subclasses implement :meth:`encode` (causal backbones) or override
    :meth:`training_representations` and :meth:`last_representation` (non-causal ones).
    """

    #: Name in the registry, set by :func:`register`.
    name: ClassVar[str] = ""
    #: Config dataclass of the backbone, set by :func:`register`.
    config_class: ClassVar[type[BackboneConfig]] = BackboneConfig
    #: True when encode(items)[:, t] depends on items[:, :t+1] only.
    causal: ClassVar[bool] = True

    def __init__(self, n_items: int, max_len: int, config: BackboneConfig):
        super().__init__()
        self.n_items = n_items  # real items are 1..n_items, 0 is padding
        self.max_len = max_len
        self.config = config

    # --- what subclasses provide -------------------------------------------------------------
    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Representations of every prefix: LongTensor[B, T] -> FloatTensor[B, T, d]."""
        raise NotImplementedError

    def output_table(self) -> torch.Tensor:
        """The item table the representation is scored against: FloatTensor[n_items + 1, d]."""
        raise NotImplementedError

    def output_bias(self) -> torch.Tensor | None:
        """Optional per-item bias added to the logits: FloatTensor[n_items + 1] or None."""
        return None

    def extra_loss(self) -> torch.Tensor | None:
        """Auxiliary loss added to the training loss after each batch (e.g. NextItNet's L2 term)."""
        return None

    # --- shared behaviour --------------------------------------------------------------------
    def training_representations(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Representations and target ids of every next-item target in a training batch.

        ``inputs`` and ``targets`` are LongTensor[B, T]; ``targets[b, t]`` is the item that follows
        ``inputs[b, :t+1]`` (0 where there is no target).  Returns (FloatTensor[N, d],
        LongTensor[N]) in row-major (sequence, position) order, which is the order the soft-label
        store uses for its rows.
        """
        hidden = self.encode(inputs)
        mask = targets > 0
        return hidden[mask], targets[mask]

    def last_representation(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Representation after the last real item of each sequence: FloatTensor[B, d]."""
        hidden = self.encode(items)
        return hidden[torch.arange(items.shape[0], device=items.device), lengths - 1]

    def item_scores(self, representation: torch.Tensor) -> torch.Tensor:
        """Logits over the real items only: [..., d] -> [..., n_items]; column j is item j + 1.

        Padding is never a valid next item, so losses and rankings use this instead of
        :meth:`score` (slicing the table is a view: no copy of the logits).
        """
        table, bias = self.output_layer()
        logits = representation @ table.t()
        # In the product's dtype: under mixed precision the [rows × items] logits stay bfloat16.
        return logits if bias is None else logits + bias.to(logits.dtype)

    def output_layer(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(table [n_items, d], bias [n_items] or None) over the real items: what :meth:`item_scores`
        multiplies by, for losses that compute the logits themselves (csrec.methods.losses.fused_output_loss)."""
        bias = self.output_bias()
        return self.output_table()[1:], None if bias is None else bias[1:]

    def score(self, representation: torch.Tensor) -> torch.Tensor:
        """Logits over all item ids (column 0 is padding): [..., d] -> [..., n_items + 1]."""
        logits = representation @ self.output_table().t()
        bias = self.output_bias()
        return logits if bias is None else logits + bias


_REGISTRY: dict[str, type[SequentialRecommender]] = {}


def register(name: str, config_class: type[BackboneConfig]) -> Callable:
    """Class decorator: ``@register("gru4rec", GRU4RecConfig)``."""

    def wrap(cls: type[SequentialRecommender]) -> type[SequentialRecommender]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        cls.name = name
        cls.config_class = config_class
        _REGISTRY[name] = cls
        return cls

    return wrap


def backbone_names() -> list[str]:
    return sorted(_REGISTRY)


def backbone_class(name: str) -> type[SequentialRecommender]:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}; valid backbones: {', '.join(backbone_names())}"
        ) from None


def make_backbone_config(name: str, overrides: dict | None = None) -> BackboneConfig:
    """The backbone's config with the paper's defaults, updated by ``overrides``.

    Unknown keys raise an error that lists the backbone's valid parameters.
    """
    config_class = backbone_class(name).config_class
    overrides = dict(overrides or {})
    valid = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} for backbone {name!r}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    return config_class(**overrides)


def build_backbone(
    name: str, n_items: int, max_len: int, config: BackboneConfig | dict | None = None
) -> SequentialRecommender:
    cls = backbone_class(name)
    if not isinstance(config, BackboneConfig):
        config = make_backbone_config(name, config)
    return cls(n_items=n_items, max_len=max_len, config=config)
