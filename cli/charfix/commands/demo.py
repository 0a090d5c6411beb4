"""`charfix demo`: the embedded demo database and storage."""

from __future__ import annotations

from typing import Annotated

import typer

from charfix.runtime import Runtime


def demo_cli(
    ctx: typer.Context,
    reset: Annotated[bool, typer.Option("--reset", help="Throw the demo away and seed it afresh.")] = False,
) -> None:
    """Start the embedded demo (a local Postgres and storage folder, no credentials) and say where it is.

    Every command takes --demo to run against it.
    Example: charfix demo --reset && charfix --demo list-stuck
    """
    import warnings

    runtime: Runtime = ctx.obj
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from charfix.demo.database import demo_home, start_demo

        url, storage = start_demo(reset=reset)
    runtime.env.out.print(f"demo {'rebuilt' if reset else 'ready'} in {demo_home()}")
    runtime.env.out.print(f"  database  {url}")
    runtime.env.out.print(f"  storage   {storage}")
    runtime.env.out.print("try: charfix --demo list-stuck")
