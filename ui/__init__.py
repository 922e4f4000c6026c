"""Loupe's Streamlit web UI (`loupe ui`): it calls search/ and indexer/ only."""
