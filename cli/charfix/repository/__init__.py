"""The tables behind one narrow interface; adapters take and return models, never raw rows."""

from charfix.repository.base import JobQuery, Repository, Schema

__all__ = ["JobQuery", "Repository", "Schema"]
