"""Loupe's Streamlit web UI (`loupe ui`): it calls the public names of loupe.search and
loupe.indexer only."""
