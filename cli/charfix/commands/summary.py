"""`list-stuck --summary`: the counts and the per-day bars (or their JSON)."""

from __future__ import annotations

from charfix.commands.options import show_character_hint
from charfix.runtime import Runtime
from charfix.queries.selection import Selection
from charfix.queries.summary import summarize


def show_summary(runtime: Runtime, selection: Selection, *, json_output: bool) -> None:
    summary = summarize(runtime.backends(), selection)
    if json_output:
        runtime.env.print_json(summary.to_json())
    elif not runtime.env.stdout_is_terminal:
        from charfix.ui.summary_render import summary_lines

        runtime.env.write_lines(summary_lines(summary))
    else:
        from charfix.ui.summary_render import render_summary

        render_summary(runtime.env.out, summary)
    show_character_hint(runtime, selection)
