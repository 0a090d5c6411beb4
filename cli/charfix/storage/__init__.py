"""Object storage behind one interface: Supabase Storage, or a local directory with one folder per bucket."""

from charfix.storage.base import Storage

__all__ = ["Storage"]
