"""The embedded default dataset: sequences from a known preference process plus injected noise.

Each item belongs to one of ``n_clusters`` latent clusters.  A user has a Dirichlet preference
over clusters; the *true* next item follows a Markov process: with probability ``stay`` it comes
from the current item's cluster, otherwise from a cluster drawn from the user's preference, and
within a cluster items are drawn from a fixed Zipf-like profile.  With probability ``noise_rate``
the *observed* item is replaced by a popularity-driven draw from the whole catalogue (the noisy
interaction ε of the paper's §3.1), and its rating is low (1–2); true interactions rate 4–5.

Because the true item of every position is recorded (column ``true_item``), a model's accuracy
against the true preference can be measured, not only against the noisy observation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class SyntheticConfig:
    n_users: int = 1000
    n_items: int = 400
    n_clusters: int = 16
    mean_length: float = 24.0
    min_length: int = 6
    stay: float = 0.8
    noise_rate: float = 0.2
    seed: int = 0


def generate_synthetic(config: SyntheticConfig) -> pd.DataFrame:
    """Interactions with columns user, item, rating, timestamp, true_item (ids start at 1)."""
    if not 0.0 <= config.noise_rate < 1.0:
        raise ValueError(f"synthetic noise_rate must lie in [0, 1), got {config.noise_rate}")
    rng = np.random.default_rng(config.seed)
    n_items, n_clusters = config.n_items, config.n_clusters
    cluster_of = rng.integers(0, n_clusters, size=n_items)
    members = [np.flatnonzero(cluster_of == c) for c in range(n_clusters)]
    members = [m if len(m) else np.array([c % n_items]) for c, m in enumerate(members)]
    within = [_zipf(len(m), 0.8, rng) for m in members]
    popularity = _zipf(n_items, 1.1, rng)[rng.permutation(n_items)]

    lengths = np.maximum(config.min_length, rng.poisson(config.mean_length, size=config.n_users))
    total = int(lengths.sum())
    user = np.repeat(np.arange(config.n_users), lengths)
    preference_cdf = np.cumsum(rng.dirichlet(np.full(n_clusters, 0.3), size=config.n_users), axis=1)
    within_cdf = [np.cumsum(w) for w in within]
    # The chain is sequential in time but independent across users: step all users at once.
    steps = np.zeros((config.n_users, int(lengths.max())), dtype=np.int64)
    cluster = _draw_rows(preference_cdf, rng)
    for t in range(steps.shape[1]):
        switch = rng.random(config.n_users) >= config.stay
        cluster = np.where(switch, _draw_rows(preference_cdf, rng), cluster)
        u = rng.random(config.n_users)
        for c in np.unique(cluster):
            rows = np.flatnonzero(cluster == c)
            pick = np.minimum(np.searchsorted(within_cdf[c], u[rows]), len(members[c]) - 1)
            steps[rows, t] = members[c][pick]
    true_item = steps[np.arange(steps.shape[1]) < lengths[:, None]]
    noisy = rng.random(total) < config.noise_rate
    observed = true_item.copy()
    observed[noisy] = rng.choice(n_items, size=int(noisy.sum()), p=popularity)
    rating = np.where(noisy, rng.integers(1, 3, size=total), rng.integers(4, 6, size=total))
    return pd.DataFrame(
        {
            "user": user + 1,
            "item": observed + 1,
            "rating": rating.astype(np.float64),
            "timestamp": np.arange(total, dtype=np.float64),
            "true_item": true_item + 1,
        }
    )


def _draw_rows(cdf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of a row-wise CDF matrix."""
    return np.minimum((cdf < rng.random((len(cdf), 1))).sum(1), cdf.shape[1] - 1)


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()
