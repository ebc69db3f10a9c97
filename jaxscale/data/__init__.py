"""Shared data layer: bundled datasets, tidy loaders, validation, array conversion."""
from jaxscale.data import validate
from jaxscale.data.arrays import to_arrays
from jaxscale.data.registry import (
    Dataset,
    data_dir,
    dataset_names,
    list_datasets,
    load,
    read_gene_expression,
)
from jaxscale.data.table import holdout_mask, read_table, thin, where
from jaxscale.data.user import read_runs_csv

__all__ = [
    "Dataset",
    "data_dir",
    "holdout_mask",
    "dataset_names",
    "list_datasets",
    "load",
    "read_gene_expression",
    "read_runs_csv",
    "read_table",
    "to_arrays",
    "validate",
    "thin",
    "where",
]
