"""Rendering for people (Rich), for scripts (JSON), and the prompts (questionary, imported only here)."""
