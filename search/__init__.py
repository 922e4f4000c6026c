"""Loupe's search side: the store of record (LanceDB), the FAISS index, queries, CLI."""
