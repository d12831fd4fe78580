"""The verify store port and its backends (memory, SQLite)."""

from clave.verify.store.base import VerificationStore

__all__ = ["VerificationStore"]
