"""Loupe's Streamlit UI (to come: it calls search/ and indexer/ only)."""
