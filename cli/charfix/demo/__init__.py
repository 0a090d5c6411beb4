"""The embedded demo: a real Postgres (pgserver) and a storage folder under the user's cache directory."""
