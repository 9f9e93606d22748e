"""Tornado handlers: they translate between the wire and the pipeline, nothing more."""
