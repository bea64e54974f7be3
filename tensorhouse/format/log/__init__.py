"""The commit log: actions, snapshot replay, atomic commits."""

from tensorhouse.format.log.actions import Action, ChunkRef, Commit, Fragment, Metadata
from tensorhouse.format.log.log import Log, entry_key
from tensorhouse.format.log.snapshot import Snapshot, replay

__all__ = ["Action", "ChunkRef", "Commit", "Fragment", "Log", "Metadata", "Snapshot", "entry_key", "replay"]
