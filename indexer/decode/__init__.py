"""Stage 2b of indexing: decoding in worker processes (``pool``, ``worker``) and what it
hands back (``results``). Never imports LanceDB: workers are spawned, and Lance is not
fork-safe."""
