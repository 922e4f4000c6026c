"""Text shown in pictures, read at indexing time: PP-OCRv4 (detection, then recognition of
each line found) through ONNX Runtime, with the models that ship inside the
``rapidocr-onnxruntime`` wheel (:mod:`.reader`), and the post-pass of an indexing run
that reads what is new (:mod:`.update`)."""

from loupe.indexer.ocr.reader import OCR_MODEL, Line, TextReader, load_reader

__all__ = ["OCR_MODEL", "Line", "TextReader", "load_reader"]
