"""Ingest a Hugging Face ``datasets.Dataset``: ``th.ingest.huggingface`` (types kept; see
``tensorhouse.interop.huggingface``). ``datasets`` is imported only when this runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorhouse.ingest.engine import IngestReport


def huggingface(
    hf_dataset: Any,
    uri: str,
    *,
    types: Mapping[str, Any] | None = None,
    batch_rows: int = 4096,
    progress: bool | None = None,
    strict: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest ``hf_dataset`` (a ``datasets.Dataset`` or ``IterableDataset``) into the dataset at ``uri``.

    ``Image`` features become ``th.Image`` columns (JPEG stays JPEG), ``ClassLabel``
    keeps its names, fixed-length lists and ``Array2D``..``5D`` become embeddings
    and tensors. Resumable and batched like ``th.ingest.arrow``.

    Example:
        >>> import datasets, tensorhouse as th
        >>> hf = datasets.Dataset.from_dict({"label": [0, 1]},
        ...                                 features=datasets.Features({"label": datasets.ClassLabel(names=["a", "b"])}))
        >>> th.ingest.huggingface(hf, "memory://doc-ingest-hf", progress=False).rows
        2
    """
    from tensorhouse.interop.huggingface import ingest_huggingface

    report: IngestReport = ingest_huggingface(
        hf_dataset,
        uri,
        types=types,
        batch_rows=batch_rows,
        progress=progress,
        strict=strict,
        storage_options=storage_options,
    )
    return report
