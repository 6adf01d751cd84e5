"""SR-GNN (Wu et al., AAAI 2019) as a CSRec student and teacher.

Follows the original SR-GNN code (and RecBole's SRGNN): each session becomes a directed graph on
its *unique* items; an edge u → v exists when v directly follows u somewhere in the session (an
edge counts once however often it repeats).  The incoming matrix averages over a node's
predecessors (A_in[i, j] = A[j, i] / in-degree(i)) and the outgoing one over its successors
(A_out[i, j] = A[i, j] / out-degree(i)).  Node states start as item embeddings and go through
``num_steps`` gated-GNN steps (a GRU cell whose input is [A_in·W_in·h + b_in, A_out·W_out·h + b_out]).
The readout maps node states back to sequence positions, attends over them from the last item
(alpha_j = q^T sigmoid(W1 h_last + W2 h_j)), and combines the attended sum with the last item's
state through ``Linear(2d -> d)`` (SR-GNN's hybrid readout).  Items are scored against the tied
item table.  All parameters start uniform in ±1/sqrt(d), as SR-GNN.  There is no dropout.

The graph of a session depends on all its items, so the model is not causal.  Every next-item
target ``targets[b, t]`` gets the readout of the graph of its own prefix ``inputs[b, :t+1]``: the
prefixes are expanded with tensor ops and their graphs are built together by
:func:`session_graph` (unique-per-row by sorting, adjacency by scattering into [N, L, L]), then run
as one batched forward — no per-session Python loop.  As a CSRec student the CE and the KL to the
soft labels apply to these per-prefix readouts, one per next-item target in the store's row-major
order; as a teacher (eval mode, fully deterministic) the same readouts are what the store keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from csrec.models.base import BackboneConfig, SequentialRecommender, register


@dataclass
class SRGNNConfig(BackboneConfig):
    embedding_dim: int = 64
    num_steps: int = 1  # gated-GNN propagation steps (SR-GNN's default)


def expand_prefixes(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every prefix that has a next-item target, as its own right-padded row.

    Returns (prefixes [N, W], lengths [N], target ids [N]) in row-major order of ``targets > 0``;
    ``targets[b, t]`` follows ``inputs[b, :t+1]``.  (Same helper as in bert4rec.py: each backbone
    file stands alone.)
    """
    rows, cols = (targets > 0).nonzero(as_tuple=True)  # nonzero is row-major
    if len(rows) == 0:
        return inputs.new_zeros(0, 1), cols, cols
    width = int(cols.max()) + 1
    keep = torch.arange(width, device=inputs.device) <= cols.unsqueeze(1)
    return inputs[rows, :width] * keep, cols + 1, targets[rows, cols]


def session_graph(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The session graphs of a right-padded batch, built without a per-session loop.

    ``items`` LongTensor[N, L] (0 = padding).  Returns
    ``nodes`` LongTensor[N, L]: each row's unique items in ascending order, then 0s;
    ``alias`` LongTensor[N, L]: the node index of each position (0 at padding — mask it);
    ``a_in``, ``a_out`` FloatTensor[N, L, L]: the normalised incoming / outgoing matrices.
    E.g. [5, 3, 5, 7] has nodes [3, 5, 7], alias [1, 0, 1, 2], edges 5→3, 3→5, 5→7.
    """
    N, L = items.shape
    device = items.device
    real = items > 0
    # Unique per row: sort (padding last), flag the first of each run of equal values.
    key = torch.where(real, items, torch.iinfo(items.dtype).max)
    sorted_items, order = key.sort(dim=1)
    first = torch.ones_like(real)
    first[:, 1:] = sorted_items[:, 1:] != sorted_items[:, :-1]
    first &= sorted_items != torch.iinfo(items.dtype).max
    node_of_sorted = first.cumsum(1) - 1  # node index of each sorted position (its run's first)
    alias = torch.zeros_like(items).scatter_(1, order, node_of_sorted).masked_fill_(~real, 0)
    # Node values: write each run's first value at its node index; the others go to a dump column.
    slot = torch.where(first, node_of_sorted, torch.full_like(node_of_sorted, L))
    nodes = items.new_zeros(N, L + 1).scatter_(1, slot, torch.where(first, sorted_items, 0))[:, :L]
    # Adjacency: A[n, u, v] = 1 when v follows u at some position (right padding: both real).
    src, dst, edge = alias[:, :-1], alias[:, 1:], real[:, 1:]
    flat = (torch.arange(N, device=device).unsqueeze(1) * L + src) * L + dst
    adjacency = torch.zeros(N * L * L, device=device)
    adjacency[flat[edge]] = 1.0  # repeated edges count once, as SR-GNN
    adjacency = adjacency.view(N, L, L)
    in_degree = adjacency.sum(1).clamp(min=1.0)  # [N, L]: column sums
    out_degree = adjacency.sum(2).clamp(min=1.0)  # [N, L]: row sums
    a_in = adjacency.transpose(1, 2) / in_degree.unsqueeze(2)
    a_out = adjacency / out_degree.unsqueeze(2)
    return nodes, alias, a_in, a_out


class GatedGNN(nn.Module):
    """SR-GNN's gated graph layer: a GRU cell fed by incoming and outgoing messages."""

    def __init__(self, d: int, num_steps: int):
        super().__init__()
        self.num_steps = num_steps
        self.edge_in = nn.Linear(d, d)
        self.edge_out = nn.Linear(d, d)
        self.b_in = nn.Parameter(torch.empty(d))
        self.b_out = nn.Parameter(torch.empty(d))
        self.w_ih = nn.Parameter(torch.empty(3 * d, 2 * d))
        self.w_hh = nn.Parameter(torch.empty(3 * d, d))
        self.b_ih = nn.Parameter(torch.empty(3 * d))
        self.b_hh = nn.Parameter(torch.empty(3 * d))

    def step(self, a_in: torch.Tensor, a_out: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        message_in = a_in @ self.edge_in(hidden) + self.b_in
        message_out = a_out @ self.edge_out(hidden) + self.b_out
        gi = torch.cat([message_in, message_out], dim=-1) @ self.w_ih.t() + self.b_ih
        gh = hidden @ self.w_hh.t() + self.b_hh
        i_r, i_i, i_n = gi.chunk(3, -1)
        h_r, h_i, h_n = gh.chunk(3, -1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_i + h_i)
        new = torch.tanh(i_n + reset * h_n)
        return new + update * (hidden - new)

    def forward(self, a_in: torch.Tensor, a_out: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        for _ in range(self.num_steps):
            hidden = self.step(a_in, a_out, hidden)
        return hidden


@register("srgnn", SRGNNConfig)
class SRGNN(SequentialRecommender):
    causal = False  # a session's graph depends on all its items

    def __init__(self, n_items: int, max_len: int, config: SRGNNConfig):
        super().__init__(n_items, max_len, config)
        d = config.embedding_dim
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.gnn = GatedGNN(d, config.num_steps)
        self.linear_one = nn.Linear(d, d)  # applied to the last item's state
        self.linear_two = nn.Linear(d, d)  # applied to every position's state
        self.linear_three = nn.Linear(d, 1, bias=False)
        self.linear_transform = nn.Linear(2 * d, d)  # [attended, last] -> representation
        # SR-GNN's init: every parameter uniform in ±1/sqrt(d).  It also overwrites the padding
        # row; padding nodes are isolated and never read back, so that row never matters.
        bound = 1.0 / math.sqrt(d)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def output_table(self) -> torch.Tensor:
        return self.item_embedding.weight

    def last_representation(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The readout of each row's session graph (each row is one whole session)."""
        items = items[:, : int(lengths.max())]
        nodes, alias, a_in, a_out = session_graph(items)
        hidden = self.gnn(a_in, a_out, self.item_embedding(nodes))  # [N, L, d], one row per node
        d = hidden.shape[-1]
        states = hidden.gather(1, alias.unsqueeze(-1).expand(-1, -1, d))  # back to positions
        last = states[torch.arange(len(items), device=items.device), lengths - 1]
        alpha = self.linear_three(torch.sigmoid(self.linear_one(last).unsqueeze(1) + self.linear_two(states)))
        attended = (alpha * states * (items > 0).unsqueeze(-1)).sum(1)
        return self.linear_transform(torch.cat([attended, last], dim=-1))

    def training_representations(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One readout per next-item target: the graph of each prefix, all prefixes batched."""
        prefixes, lengths, target_ids = expand_prefixes(inputs, targets)
        if len(target_ids) == 0:
            return self.item_embedding.weight.new_zeros(0, self.config.embedding_dim), target_ids
        return self.last_representation(prefixes, lengths), target_ids
