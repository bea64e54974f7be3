"""Reports returned by maintenance operations."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VacuumReport:
    """What ``vacuum`` deleted (or would delete, with ``dry_run``)."""

    dry_run: bool
    deleted: tuple[str, ...] = field(default=())
    bytes_freed: int = 0
    kept_files: int = 0
    retained_versions: int = 0
    #: Log entries and checkpoints no retained version needs (also deleted, or listed with ``dry_run``).
    log_files: tuple[str, ...] = field(default=())
    log_bytes_freed: int = 0

    def __str__(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"vacuum {verb} {len(self.deleted)} files ({self.bytes_freed / 1e6:.1f} MB) and "
            f"{len(self.log_files)} log files ({self.log_bytes_freed / 1e6:.1f} MB); kept {self.kept_files} "
            f"files of {self.retained_versions} retained versions"
        )


@dataclass(frozen=True)
class CompactReport:
    """What ``compact`` rewrote."""

    version: int | None
    fragments_before: int
    fragments_after: int
    rows_rewritten: int

    def __str__(self) -> str:
        if self.version is None:
            return f"compact: nothing to do ({self.fragments_before} fragments)"
        return (
            f"compact: {self.fragments_before} -> {self.fragments_after} fragments, {self.rows_rewritten} rows "
            f"rewritten, version {self.version}"
        )
