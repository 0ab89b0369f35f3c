"""Placeholder while this source is being written; filled in before commit."""
SOURCES = ()
