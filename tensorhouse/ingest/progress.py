"""Old name of :mod:`tensorhouse.ingest.engine` (the ingestion engine), kept so existing imports work."""

from __future__ import annotations

from tensorhouse.ingest.engine import (
    BATCH_BYTES,
    BATCH_ROWS,
    IngestError,
    IngestInterrupted,
    IngestReport,
    Loaded,
    PlannedBatch,
    check_batch_limits,
    default_workers,
    fingerprint,
    open_or_create,
    progress_enabled,
    run_batches,
)

__all__ = [
    "BATCH_BYTES",
    "BATCH_ROWS",
    "IngestError",
    "IngestInterrupted",
    "IngestReport",
    "Loaded",
    "PlannedBatch",
    "check_batch_limits",
    "default_workers",
    "fingerprint",
    "open_or_create",
    "progress_enabled",
    "run_batches",
]
