"""Dialects: codecs between a client's API and the one internal conversation (API.md Part 3)."""
