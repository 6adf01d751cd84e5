"""The soft-label store: teachers' outputs for every training target, computed once.

The authors recompute every teacher's forward pass for every student batch.  csrec runs the
teachers once, after they finish, over every training target (row order = the flat target
order of :meth:`SequenceData.train_target_offsets`), and keeps what a student needs to rebuild
softmax(e / T) for any row:

* ``factored`` (default): each teacher's per-row representation h (d numbers) and its output
  table W (+ bias).  A teacher's logits for a row are exactly h·Wᵀ (+ b), so the ensembled soft
  label is exact for any T and either ensemble mode, at m·d floats per row instead of |I|.
* ``dense``: the ensembled logits e as float16 rows (|I| values per row; any T, logits mode; in
  probs mode the log of the tempered probability mean at the store's fixed T).
* ``topk``: the K largest probabilities of softmax(e / T) at a fixed T with their item ids; the
  exact remaining mass is spread evenly over the other items.
* ``prior``: one logit vector shared by every row (SoftRec's popularity prior).

All payloads are plain numpy arrays (``arrays``) plus JSON-able metadata (``meta``), so the Ray
layer can put a store in the object store and trials map it without copying; :meth:`save` /
:meth:`load` write them atomically with the teacher-configuration fingerprint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from csrec.atomic import atomic_path
from csrec.data.dataset import SequenceData
from csrec.methods.config import STORE_MODES
from csrec.models.base import SequentialRecommender
from csrec.models.precision import PRECISIONS, compute_dtype, full_precision


@dataclass
class SoftLabelStore:
    mode: str
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)
    _device_cache: dict = field(default_factory=dict, repr=False, compare=False)

    # --- sizes ----------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return int(self.meta["n_rows"])

    @property
    def n_items(self) -> int:
        return int(self.meta["n_items"])

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))

    def bytes_per_row(self) -> float:
        return self.nbytes / max(self.n_rows, 1)

    # --- reading --------------------------------------------------------------------------
    def _tensor(self, name: str, device: torch.device) -> torch.Tensor:
        key = (name, str(device))
        if key not in self._device_cache:
            array = self.arrays[name]
            # Arrays from the Ray object store are read-only; torch wants writable memory but
            # never writes here, so share it on CPU (no copy) and copy once to an accelerator.
            with _quiet_readonly():
                tensor = torch.from_numpy(array)
            self._device_cache[key] = tensor.to(device)
        return self._device_cache[key]

    def teacher_probs(self, rows: torch.Tensor, temperature: float, precision: str = "float32") -> torch.Tensor:
        """softmax(e / T) for the given rows (or the ensemble's mean tempered probabilities).

        ``precision`` is the arithmetic of the factored store's logit product (logit-mean
        ensemble): ``"float32"``, ``"bfloat16"`` (inputs rounded to bfloat16, float32
        accumulation; about 3× faster on CPUs with AVX512-BF16/AMX and on recent GPUs, mean KL
        error ~1e-5 nats at T = 1 on Last.FM), or ``"auto"`` (bfloat16 where the hardware has
        native support, else float32; a fixed property of the machine, so runs stay repeatable);
        ``"fp32"`` / ``"bf16"`` are accepted too (csrec.models.precision).  The softmax is float32
        either way, and an enclosing autocast does not change the arithmetic chosen here.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"unknown soft-label precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        with full_precision(rows.device):
            return self._teacher_probs(rows, temperature, precision)

    def _teacher_probs(self, rows: torch.Tensor, temperature: float, precision: str) -> torch.Tensor:
        device = rows.device
        ensemble = self.meta.get("ensemble", "logits")
        if self.mode == "prior":
            prior = self._tensor("logits", device).float()
            return torch.softmax(prior / temperature, -1).expand(len(rows), -1)
        if self.mode == "factored" and ensemble == "logits":
            # mean_k(h_k·W_kᵀ + b_k) = [h_1 … h_m]·[W_1 … W_m]ᵀ / m + mean_k b_k: one GEMM over the
            # concatenated tables instead of m products and their mean (about 2× faster), with
            # 1 / (m·T) applied to the small [N, m·d] side rather than to the [N, n_items] logits.
            reps = self._tensor("reps", device)[:, rows]  # [m, N, d]
            m, n, d = reps.shape
            joint = reps.permute(1, 0, 2).reshape(n, m * d).float() * (1.0 / (m * temperature))
            dtype = compute_dtype(precision, device)
            table, bias = self._joint_table(device, dtype)
            logits = joint.to(dtype) @ table.T
            if bias is not None:
                logits = logits + bias / temperature
            return torch.softmax(logits, -1, dtype=torch.float32)
        if self.mode == "factored":
            reps = self._tensor("reps", device)[:, rows].float()  # [m, N, d]
            tables = self._tensor("tables", device).float()  # [m, n_items, d]
            logits = torch.bmm(reps, tables.transpose(1, 2))  # [m, N, n_items]
            if "biases" in self.arrays:
                logits = logits + self._tensor("biases", device).float().unsqueeze(1)
            if ensemble == "logits":
                return torch.softmax(logits.mean(0) / temperature, -1)
            weights = self._tensor("weights", device).float()
            probs = torch.softmax(logits / temperature, -1)
            return (weights.view(-1, 1, 1) * probs).sum(0) / weights.sum()
        self._check_temperature(temperature)
        if self.mode == "dense":
            values = self._tensor("values", device)[rows].float()
            if ensemble == "logits":
                return torch.softmax(values / temperature, -1)
            return torch.softmax(values, -1)  # log of the tempered mean: already at the store's T
        # topk
        indices = self._tensor("indices", device)[rows].long()
        values = self._tensor("values", device)[rows].float()
        n_rest = self.n_items - indices.shape[1]
        rest = (1.0 - values.sum(-1, keepdim=True)).clamp_min(0.0) / max(n_rest, 1)
        probs = rest.expand(len(rows), self.n_items).clone()
        probs.scatter_(1, indices, values)
        return probs

    def _joint_table(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[n_items, m·d] concatenation of the teachers' tables (in ``dtype``) and their mean bias, cached."""
        key = ("joint_table", str(device), dtype)
        if key not in self._device_cache:
            tables = self._tensor("tables", device).float()  # [m, n_items, d]
            m, n_items, d = tables.shape
            self._device_cache[key] = tables.permute(1, 0, 2).reshape(n_items, m * d).to(dtype).contiguous()
            if "biases" in self.arrays:
                self._device_cache[("joint_bias", str(device))] = self._tensor("biases", device).float().mean(0)
        return self._device_cache[key], self._device_cache.get(("joint_bias", str(device)))

    def _check_temperature(self, temperature: float) -> None:
        fixed = self.meta.get("temperature")
        needs_fixed = self.mode == "topk" or (self.mode == "dense" and self.meta.get("ensemble") == "probs")
        if needs_fixed and fixed is not None and abs(fixed - temperature) > 1e-9:
            raise ValueError(
                f"this {self.mode} soft-label store was built at T={fixed}; it cannot serve T={temperature}"
            )

    # --- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            np.savez(tmp, __meta__=np.frombuffer(json.dumps({"mode": self.mode, **self.meta}).encode(), dtype=np.uint8), **self.arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: str | None = None) -> "SoftLabelStore":
        with np.load(path) as payload:
            meta = json.loads(payload["__meta__"].tobytes().decode())
            arrays = {k: payload[k] for k in payload.files if k != "__meta__"}
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise ValueError(f"{path}: soft-label store fingerprint {meta.get('fingerprint')} != expected {fingerprint}")
        mode = meta.pop("mode")
        return cls(mode=mode, arrays=arrays, meta=meta)

    def __getstate__(self):
        return {"mode": self.mode, "arrays": self.arrays, "meta": self.meta}

    def __setstate__(self, state):
        self.mode, self.arrays, self.meta = state["mode"], state["arrays"], state["meta"]
        self._device_cache = {}


class _quiet_readonly:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


# --- building ---------------------------------------------------------------------------------
def teacher_representations(
    teacher: SequentialRecommender, data: SequenceData, device: torch.device, batch_sequences: int = 512
) -> np.ndarray:
    """float32 [n_train_targets, d]: the teacher's representation of every training target."""
    from csrec.training import BatchMaker

    maker = BatchMaker(data, None, batch_sequences, device)
    out = np.empty((data.n_train_targets, teacher.config.embedding_dim), dtype=np.float32)
    teacher.to(device).eval()
    with torch.no_grad():
        for lo in range(0, len(maker.subset), batch_sequences):
            batch = maker.make(torch.as_tensor(maker.subset[lo : lo + batch_sequences], device=device))
            reps, _ = teacher.training_representations(batch.inputs, batch.targets)
            out[batch.rows.cpu().numpy()] = reps.float().cpu().numpy()
    return out


def build_store(
    teachers: list[SequentialRecommender],
    data: SequenceData,
    mode: str = "factored",
    ensemble: str = "logits",
    temperature: float | None = None,
    top_k: int = 100,
    weights: list[float] | None = None,
    device: torch.device | str = "cpu",
    fingerprint: str = "",
    rep_dtype=np.float32,
) -> SoftLabelStore:
    """Run the teachers once over every training target and keep their outputs in ``mode``."""
    if mode not in STORE_MODES:
        raise ValueError(f"unknown store mode {mode!r}; valid: {', '.join(STORE_MODES)}")
    if mode == "topk" or (mode == "dense" and ensemble == "probs"):
        if temperature is None:
            raise ValueError(f"a {mode} store with {ensemble} ensembling needs a temperature")
    device = torch.device(device)
    weights = list(weights or [1.0] * len(teachers))
    reps = np.stack([teacher_representations(t, data, device) for t in teachers]).astype(rep_dtype)
    tables = np.stack([t.output_table()[1:].detach().float().cpu().numpy() for t in teachers])
    biases = [t.output_bias() for t in teachers]
    factored = {"reps": reps, "tables": tables, "weights": np.asarray(weights, dtype=np.float32)}
    if all(b is not None for b in biases):
        factored["biases"] = np.stack([b[1:].detach().float().cpu().numpy() for b in biases])
    meta = {
        "n_rows": data.n_train_targets, "n_items": data.n_items, "n_teachers": len(teachers),
        "ensemble": ensemble, "temperature": temperature if mode != "factored" else None,
        "fingerprint": fingerprint, "top_k": top_k if mode == "topk" else None,
    }
    store = SoftLabelStore("factored", factored, dict(meta))
    if mode == "factored":
        return store
    # Dense and top-K rows are derived from the exact factored store, chunk by chunk.
    n_rows, n_items = data.n_train_targets, data.n_items
    chunk = max(1, (1 << 22) // max(n_items, 1))
    if mode == "dense":
        values = np.empty((n_rows, n_items), dtype=np.float16)
    else:
        k = min(top_k, n_items)
        values = np.empty((n_rows, k), dtype=np.float32)
        indices = np.empty((n_rows, k), dtype=np.int32)
    for lo in range(0, n_rows, chunk):
        rows = torch.arange(lo, min(n_rows, lo + chunk))
        if mode == "dense":
            if ensemble == "logits":
                e = _factored_logits(store, rows).mean(0)
                values[lo : lo + len(rows)] = e.numpy().astype(np.float16)
            else:
                values[lo : lo + len(rows)] = store.teacher_probs(rows, temperature).clamp_min(1e-30).log().numpy().astype(np.float16)
        else:
            probs = store.teacher_probs(rows, temperature)
            top = torch.topk(probs, k, dim=-1)
            values[lo : lo + len(rows)] = top.values.numpy()
            indices[lo : lo + len(rows)] = top.indices.numpy().astype(np.int32)
    arrays = {"values": values} if mode == "dense" else {"values": values, "indices": indices}
    return SoftLabelStore(mode, arrays, meta)


def _factored_logits(store: SoftLabelStore, rows: torch.Tensor) -> torch.Tensor:
    reps = torch.from_numpy(store.arrays["reps"][:, rows.numpy()]).float()
    logits = torch.bmm(reps, torch.from_numpy(store.arrays["tables"]).float().transpose(1, 2))
    if "biases" in store.arrays:
        logits = logits + torch.from_numpy(store.arrays["biases"]).float().unsqueeze(1)
    return logits


def prior_store(logits: np.ndarray, n_rows: int, fingerprint: str = "") -> SoftLabelStore:
    """A store whose every row has the same teacher logits (SoftRec)."""
    meta = {"n_rows": n_rows, "n_items": len(logits), "n_teachers": 1, "ensemble": "logits",
            "temperature": None, "fingerprint": fingerprint, "top_k": None}
    return SoftLabelStore("prior", {"logits": np.asarray(logits, dtype=np.float32)}, meta)
