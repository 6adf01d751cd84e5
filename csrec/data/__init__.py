"""Data layer: readers, the paper's preprocessing, named datasets and the prepared-data cache."""

from csrec.data.dataset import (
    DATASETS,
    DataConfig,
    EvalSplit,
    SequenceData,
    dataset_names,
    format_stats,
    load_dataset,
)
from csrec.data.readers import read_interactions
from csrec.data.synthetic import SyntheticConfig, generate_synthetic

__all__ = [
    "DATASETS", "DataConfig", "EvalSplit", "SequenceData", "SyntheticConfig", "dataset_names",
    "format_stats", "generate_synthetic", "load_dataset", "read_interactions",
]
