"""Named training protocols: csrec's own defaults, and the authors' code as one preset.

``protocol="authors"`` reproduces the choices of the authors' public code (Furyton/CSRec; file
references below are into that repository) that differ from csrec's defaults.  Each choice is a
plain parameter that can also be set on its own; a parameter given explicitly wins over the
preset.

========================  =====================================  ==================================================
parameter                 authors' value                         where it comes from
========================  =====================================  ==================================================
batch_unit, batch_size    "targets", 64                          ``dataloaders/NextItemDataloader.py`` (one sample per
                                                                 prefix, batch 64: "48256 iter per epoch" in the logs)
lr                        1e-3                                   ``scheduler/utils.py`` (Adam, lr 0.001)
epochs, patience          Last.FM configs: GRU4Rec 80, NARM      ``asset/config/config2/lastfm_small/*/config.json``;
                          100, NextItNet 50, SASRec 50, else     no early stopping, the best-validation epoch is
                          80; patience 0                         kept (``trainers/BasicTrainer.py``, ``loggers.py``)
ensemble                  "probs"                                ``models/Ensembler.py`` (weighted mean of tempered
                                                                 probabilities, not of logits)
ensemble_weights          CSRec-M with 2 teachers: GRU4Rec       ``weight_list`` in the Last.FM ensemble configs and
                          0.1/0.9, SASRec 0.2/0.8, others and    the logged runs; CSRec-D's configs use 0.5/0.5
                          CSRec-D 0.5/0.5; equal otherwise
noise_column_max          "running"                              ``models/auxiliary_models/PriorPreferModel.py``
                                                                 (detached running max, CSRec-T)
========================  =====================================  ==================================================
"""

from __future__ import annotations

from csrec.errors import ConfigError

PROTOCOLS = ("csrec", "authors")

AUTHORS_EPOCHS = {"gru4rec": 80, "narm": 100, "nextitnet": 50, "sasrec": 50}
AUTHORS_DEFAULT_EPOCHS = 80
AUTHORS_CSREC_M_WEIGHTS = {"gru4rec": (0.1, 0.9), "sasrec": (0.2, 0.8)}


def protocol_settings(protocol: str, backbone: str, method: str, num_teachers: int) -> dict:
    """The flat parameters (``make_config`` keywords) that ``protocol`` sets for this experiment."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if protocol == "csrec":
        return {}
    backbone = backbone.lower()
    settings = {
        "batch_unit": "targets", "batch_size": 64, "lr": 1e-3, "patience": 0,
        "epochs": AUTHORS_EPOCHS.get(backbone, AUTHORS_DEFAULT_EPOCHS),
        "ensemble": "probs", "noise_column_max": "running",
    }
    if method in ("csrec-m", "csrec-d") and num_teachers == 2:
        pair = AUTHORS_CSREC_M_WEIGHTS.get(backbone, (0.5, 0.5)) if method == "csrec-m" else (0.5, 0.5)
        settings["ensemble_weights"] = pair
    return settings
