"""tensorhouse: a lakehouse for deep-learning data.

Datasets of typed tensor columns stored as compressed chunks on local disk,
memory or object storage, behind an ACID commit log with time travel;
queried from DuckDB and DataFusion; streamed into PyTorch.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-init", {"image": th.Image("png"), "label": th.ClassLabel(["a", "b"])})
    >>> ds.append({"image": [np.zeros((8, 8, 3), np.uint8)], "label": [1]})
    1
    >>> th.open("memory://doc-init")[0]["image"].shape
    (8, 8, 3)
"""

from __future__ import annotations

import importlib
from typing import Any

from tensorhouse import limits, types
from tensorhouse.errors import (
    ArgumentError,
    CodecError,
    CommitConflictError,
    ConditionalPutUnsupportedError,
    CorruptChunkError,
    CorruptDataError,
    CorruptLogError,
    DatasetExistsError,
    DatasetNotFoundError,
    RefExistsError,
    SchemaError,
    StorageError,
    TensorhouseError,
    UnsupportedError,
    VersionNotFoundError,
)
from tensorhouse.format.dataset import Dataset, VersionInfo, create, open
from tensorhouse.format.native_files import NativeFile, native_files

# `th.loader` is the function: importing the subpackage here (its __init__ is light)
# lets the import system bind the name first, and the function then replaces it.
from tensorhouse.loader import LoaderConfig, loader
from tensorhouse.types import (
    Arrow,
    BBox,
    Binary,
    ClassLabel,
    ColumnType,
    Embedding,
    Image,
    Json,
    Scalar,
    Schema,
    Tensor,
    Text,
)

__version__ = "0.1.0"

# Engine and torch integrations load on first use, so `import tensorhouse`
# stays fast and works without the optional extras installed.
_LAZY = {
    "duckdb": "tensorhouse.connector.duckdb",
    "datafusion": "tensorhouse.connector.datafusion",
    "udfs": "tensorhouse.udfs",
    "sql": "tensorhouse.sql",
    "connector": "tensorhouse.connector",
    "ingest": "tensorhouse.ingest",
    "ray": "tensorhouse.ray",
    "index": "tensorhouse.index",
    "polars": "tensorhouse.interop.polars",
    "daft": "tensorhouse.interop.daft",
}


# Functions of lazily loaded modules: name -> (module, attribute).
_LAZY_ATTRS = {
    "write": ("tensorhouse.connector.write_results", "write"),
    "to_numpy": ("tensorhouse.connector.results", "result_to_numpy"),
    "to_torch": ("tensorhouse.loader.tensors", "result_to_torch"),
    "serve": ("tensorhouse.viewer", "serve"),
    "VectorSearchError": ("tensorhouse.index.errors", "VectorSearchError"),
    "IndexNotFoundError": ("tensorhouse.index.errors", "IndexNotFoundError"),
    "export": ("tensorhouse.interop.export", "export"),
    "to_huggingface": ("tensorhouse.interop.huggingface", "to_huggingface"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'tensorhouse' has no attribute {name!r}")


__all__ = [
    "ArgumentError",
    "Arrow",
    "BBox",
    "Binary",
    "ClassLabel",
    "CodecError",
    "ColumnType",
    "CommitConflictError",
    "ConditionalPutUnsupportedError",
    "CorruptChunkError",
    "CorruptDataError",
    "CorruptLogError",
    "Dataset",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "Embedding",
    "Image",
    "Json",
    "LoaderConfig",
    "NativeFile",
    "RefExistsError",
    "Scalar",
    "Schema",
    "SchemaError",
    "StorageError",
    "Tensor",
    "TensorhouseError",
    "Text",
    "UnsupportedError",
    "VersionInfo",
    "VersionNotFoundError",
    "create",
    "limits",
    "loader",
    "native_files",
    "open",
    "types",
]
