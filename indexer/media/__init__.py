"""Stage 2a of indexing: bytes to model input, with no model and no store: what a file is
(``sniff``), pictures (``image``), video frames and shots (``video``, ``segments``,
``upright``), sound windows (``audio``) and their features (``audio_features``)."""
