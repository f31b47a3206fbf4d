"""Artifact storage over fsspec: local directories, S3 and GCS."""

from tuneforge.storage.store import (
    ArtifactNotFound,
    ArtifactStore,
    InvalidKeyError,
    StorageError,
    TooLargeError,
    artifact_prefix,
)

__all__ = [
    "ArtifactNotFound",
    "ArtifactStore",
    "InvalidKeyError",
    "StorageError",
    "TooLargeError",
    "artifact_prefix",
]
