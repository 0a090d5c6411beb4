"""A strict local Supabase test server (PostgREST + Storage subsets).

Usage::

    from tests.supabase_server import SupabaseTestServer, make_service_key
    with SupabaseTestServer(dsn=dsn, storage_root=tmp / "storage",
                            service_key=make_service_key()) as srv:
        client = supabase.create_client(srv.url, srv.service_key)

See docs/testing-supabase-server.md for what is covered.
"""

from .app import DEFAULT_BUCKETS, SupabaseTestServer
from .faults import Faults
from .keys import make_opaque_key, make_service_key

__all__ = ["DEFAULT_BUCKETS", "Faults", "SupabaseTestServer", "make_opaque_key", "make_service_key"]
