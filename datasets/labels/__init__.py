"""Loupe's shipped label vocabularies (installed as the resource package loupe.labels)."""
