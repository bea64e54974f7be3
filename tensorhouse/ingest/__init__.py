"""Ingest existing data into tensorhouse datasets: image folders, COCO, Parquet/CSV/Arrow, WebDataset,
Hugging Face datasets.

Every source is read in batches (``batch_rows`` rows or about ``batch_bytes``
of input, whichever comes first); each batch is one commit, appended with
``app_id="ingest:<source fingerprint>"`` and ``txn_version=<batch index>``.
Memory stays bounded by a few batches, files are read and validated on a
thread pool while the previous batch is written, and re-running an
interrupted ingest skips the committed batches: rows land exactly once.
Unreadable or corrupt images are skipped with a warning (``strict=True``
raises instead). Every function returns an :class:`IngestReport`.

Example:
    >>> import pyarrow as pa, tensorhouse as th
    >>> report = th.ingest.arrow(pa.table({"x": [1, 2, 3], "name": ["a", "b", "c"]}), "memory://doc-ingest",
    ...                          progress=False)
    >>> report.rows, th.open("memory://doc-ingest").schema
    (3, Schema(x: Scalar(dtype='int64'), name: Text(compression='lz4')))
"""

from __future__ import annotations

from tensorhouse.ingest.arrow_source import arrow, csv, parquet
from tensorhouse.ingest.coco import coco
from tensorhouse.ingest.engine import IngestError, IngestInterrupted, IngestReport
from tensorhouse.ingest.huggingface import huggingface
from tensorhouse.ingest.imagefolder import imagefolder
from tensorhouse.ingest.webdataset import webdataset

__all__ = [
    "IngestError",
    "IngestInterrupted",
    "IngestReport",
    "arrow",
    "coco",
    "csv",
    "huggingface",
    "imagefolder",
    "parquet",
    "webdataset",
]
