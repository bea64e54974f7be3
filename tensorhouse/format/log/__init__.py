"""The commit log: typed actions, snapshot replay, atomic commits."""

from tensorhouse.format.log.actions import (
    Action,
    AddFragment,
    AddIndex,
    ChunkRef,
    Commit,
    DeletionRef,
    DropIndex,
    Fragment,
    IndexEntry,
    IndexFile,
    Metadata,
    Protocol,
    RemoveFragment,
    ReplaceFragment,
    Restore,
    SetMetadata,
    Txn,
)
from tensorhouse.format.log.log import Log, PrunePlan, entry_key
from tensorhouse.format.log.snapshot import Snapshot, replay

__all__ = [
    "Action",
    "AddFragment",
    "AddIndex",
    "ChunkRef",
    "Commit",
    "DeletionRef",
    "DropIndex",
    "Fragment",
    "IndexEntry",
    "IndexFile",
    "Log",
    "Metadata",
    "Protocol",
    "PrunePlan",
    "RemoveFragment",
    "ReplaceFragment",
    "Restore",
    "SetMetadata",
    "Snapshot",
    "Txn",
    "entry_key",
    "replay",
]
