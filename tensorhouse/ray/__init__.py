"""Ray Data integration: parallel reads and exactly-once writes (the optional ``ray`` extra).

``th.ray.read(uri, ...)`` gives a ``ray.data.Dataset`` with one read task per
fragment (or per range of a big fragment), pinned to one version;
``th.ray.write(ray_dataset, uri)`` writes chunk files in parallel tasks and
commits them once from the driver; ``th.ray.add_columns(ray_dataset, uri)``
adds columns computed by a Ray job to the existing rows (by ``_rowid``), in
one commit. This is the only package that imports
``ray``; ``import tensorhouse`` never does.
"""

from __future__ import annotations

try:
    import ray.data  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("tensorhouse.ray needs Ray Data: pip install 'tensorhouse[ray]'") from err

from tensorhouse.ray.columns import TensorhouseColumnSink, add_columns
from tensorhouse.ray.datasink import TensorhouseDatasink, write
from tensorhouse.ray.datasource import TensorhouseDatasource, read

__all__ = [
    "TensorhouseColumnSink",
    "TensorhouseDatasink",
    "TensorhouseDatasource",
    "add_columns",
    "read",
    "write",
]
