"""Shipped bench files (``virtual.toml`` is the default virtual bench)."""
