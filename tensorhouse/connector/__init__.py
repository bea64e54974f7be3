"""SQL engines over tensorhouse datasets, and query results back into tensors.

- :class:`TensorhouseArrowDataset` / :func:`arrow_dataset`: a
  ``pyarrow.dataset.Dataset`` over one snapshot, with projection, filter and
  statistics pushdown (what both engines scan).
- ``th.duckdb`` (:mod:`tensorhouse.connector.duckdb`) and ``th.datafusion``
  (:mod:`tensorhouse.connector.datafusion`): register datasets as tables.
- :func:`to_numpy`: a query result as arrays with their shapes (``th.to_torch``, the
  same as tensors, lives in :mod:`tensorhouse.loader.tensors`: only the loader imports torch).
- :func:`write` (``th.write``): a query result into a new or existing dataset.

The engine modules import their engine; this package does not, so it loads
without DuckDB or DataFusion installed.

Example:
    >>> import pyarrow as pa, tensorhouse as th
    >>> th.to_numpy(pa.table({"x": [1, 2]}))["x"].tolist()
    [1, 2]
"""

from __future__ import annotations

from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset, arrow_dataset
from tensorhouse.connector.results import to_numpy
from tensorhouse.connector.write_results import write

__all__ = ["TensorhouseArrowDataset", "arrow_dataset", "to_numpy", "write"]
