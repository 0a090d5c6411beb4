"""What a command works through: the repository, the storage and the provider fetcher, built from
settings by `bootstrap.py`; `http.py` is the Supabase client they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from charfix.repository.base import Repository
from charfix.storage.base import Storage
from charfix.storage.provider import FetchedImage, fetch_image


@dataclass(frozen=True)
class Backends:
    repository: Repository
    storage: Storage
    # How copy_object reads a provider's URL: the guarded fetch (docs/reliability.md, "The provider fetch").
    fetcher: Callable[[str], FetchedImage] = fetch_image

    def close(self) -> None:
        """Close the repository's connection and the storage's client (over Supabase they share one)."""
        try:
            self.repository.close()
        finally:
            self.storage.close()


__all__ = ["Backends"]
