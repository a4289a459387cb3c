"""Storage backends: the few primitives the store needs, for S3 and a filesystem."""

from .base import Backend, ObjectInfo, PartUpload

__all__ = ["Backend", "ObjectInfo", "PartUpload"]
