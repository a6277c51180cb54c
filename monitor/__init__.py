"""Vigil's monitor: config, store, pipeline, scheduler, daemon and CLI."""

__all__: list[str] = []
