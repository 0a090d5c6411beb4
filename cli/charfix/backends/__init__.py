"""What a command works through: the repository, the storage and the provider fetcher, built from
settings by `bootstrap.py`; `http.py` is the Supabase client they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from charfix.models import Job
from charfix.repository.base import JobQuery, Repository
from charfix.storage.base import Catalogue, Storage
from charfix.storage.provider import FetchedImage, fetch_image


class Prefilter(Protocol):
    def provably_saved(self, jobs: Sequence[Job], objects: Catalogue) -> set[UUID]:
        """The ids among `jobs` that need no full read: saved, as the diagnosis would conclude
        (docs/diagnosis.md, "Provably saved"). `objects`: the catalogue the scan reads."""
        ...

    def scanning(self, query: JobQuery) -> Prefilter:
        """The same for one scan over `query`, page after page in its order: it may prove many
        pages' jobs at once and answer each page from that."""
        ...


@dataclass(frozen=True)
class Backends:
    repository: Repository
    storage: Storage
    # How copy_object reads a provider's URL: the guarded fetch (docs/reliability.md, "The provider fetch").
    fetcher: Callable[[str], FetchedImage] = fetch_image
    # Where the scan reads which objects exist, when not from the storage's own listings: storage.objects
    # in the database (storage/catalogue.py). Writes, and what a repair confirms first, go to `storage`.
    catalogue: Catalogue | None = None
    # Which jobs of a page the scan may count as saved without reading them whole (queries/prefilter.py):
    # one statement, over Postgres only.
    prefilter: Prefilter | None = None

    @property
    def listings(self) -> Catalogue:
        return self.catalogue if self.catalogue is not None else self.storage

    @property
    def catalogue_description(self) -> str:
        """Which catalogue the scan reads, for `doctor` and the bench."""
        if self.catalogue is not None:
            return getattr(self.catalogue, "description", type(self.catalogue).__name__)
        return "the local folder" if self.storage.location().startswith("file:") else "Storage API listings"

    def close(self) -> None:
        """Close the repository's connection and the storage's client (over Supabase they share one)."""
        try:
            self.repository.close()
        finally:
            self.storage.close()


__all__ = ["Backends"]
