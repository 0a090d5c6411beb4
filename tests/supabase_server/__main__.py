"""Run the test server on its own, for a benchmark or a manual try:

    python -m tests.supabase_server --dsn postgresql://... --storage-root DIR [--latency-ms 20] [--port 54321]

It prints the URL and a service key, then serves until interrupted. `--latency-ms` (default: the
environment's SUPABASE_TEST_LATENCY_MS, else 0) delays every request by that constant.
"""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

from .app import SupabaseTestServer
from .keys import make_service_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.supabase_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="the Postgres database behind /rest/v1")
    parser.add_argument("--storage-root", required=True, type=Path, help="the folder behind /storage/v1")
    parser.add_argument("--latency-ms", type=float, default=float(os.environ.get("SUPABASE_TEST_LATENCY_MS", "0")),
                        help="a constant delay before every request is handled (default $SUPABASE_TEST_LATENCY_MS or 0)")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args(argv)
    key = make_service_key()
    with SupabaseTestServer(dsn=args.dsn, storage_root=args.storage_root, service_key=key,
                            port=args.port, latency=args.latency_ms / 1000) as server:
        print(f"SUPABASE_URL={server.url}", flush=True)
        print(f"SUPABASE_SERVICE_ROLE_KEY={key}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
