"""Reading the lines of text in a picture: where (a four-point box), what, how sure.

PP-OCRv4's detector finds text lines; only when it finds some do the direction
classifier and the recogniser run, so a picture without text costs one detector pass
(the gate). Boxes are given in the pixels of the picture as it stands upright, at its
full size, even when a smaller copy was read (``read(image, size=...)``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from loupe.indexer.errors import LoupeError

# What reads the text; stored with every reading, so that another model reads again.
OCR_MODEL = "PP-OCRv4 (rapidocr-onnxruntime)"
# The longest side a picture is read at: the detector's own limit (rapidocr's
# max_side_len); larger pictures are read from a copy this size.
READ_SIDE = 2000


@dataclass(frozen=True)
class Line:
    """One line of text found in a picture.

    ``box``: its corners, x1, y1, ... x4, y4, clockwise from the top left as the text
    reads, in the upright picture's full-size pixels. ``score``: the recogniser's
    confidence in (0, 1].
    """

    text: str
    score: float
    box: tuple[float, ...]

    def as_dict(self) -> dict:
        """JSON-ready."""
        d = asdict(self)
        d["box"] = list(self.box)
        return d


class TextReader:
    """PP-OCRv4 detection + recognition on ONNX Runtime (CUDA when present and asked)."""

    def __init__(self, engine, providers: list[str]):
        self._engine = engine
        self.providers = providers

    def read(self, image: Image.Image, size: tuple[int, int] | None = None) -> list[Line]:
        """The lines of text in ``image`` (top to bottom, then left to right).

        ``size``: the full-size picture's (width, height) when ``image`` is a smaller
        copy of it: boxes are scaled to it. Lines of every confidence are returned.
        """
        full_w, full_h = size or image.size
        if max(image.size) > READ_SIDE:
            image = image.copy()
            image.thumbnail((READ_SIDE, READ_SIDE), Image.Resampling.BILINEAR)
        sx, sy = full_w / image.width, full_h / image.height
        rgb = np.asarray(image.convert("RGB"))
        found, _ = self._engine(np.ascontiguousarray(rgb[:, :, ::-1]))  # the models read BGR
        lines = []
        for points, text, score in found or ():
            text = str(text).strip()
            if not text:
                continue
            box = tuple(round(float(v) * (sx if i % 2 == 0 else sy), 1)
                        for i, v in enumerate(np.asarray(points, np.float64).reshape(-1)))
            lines.append(Line(text, round(float(score), 4), box))
        return lines


def default_threads() -> int:
    """Threads for ONNX Runtime: every core (OCR runs after the run's embedding is done,
    so it does not compete with the models), or ``LOUPE_OCR_THREADS``."""
    env = os.environ.get("LOUPE_OCR_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError as e:
            raise LoupeError(f"LOUPE_OCR_THREADS must be a number of threads, not {env!r}") from e
    return max(1, os.cpu_count() or 1)


def load_reader(threads: int | None = None, device: str = "auto") -> TextReader:
    """The text reader, with the models bundled in ``rapidocr-onnxruntime``.

    ``device``: "auto" uses ONNX Runtime's CUDA provider when it is installed
    (onnxruntime-gpu) and a GPU is there, "cpu" never. Raises LoupeError (one line)
    when the package or its models are missing.
    """
    try:
        import onnxruntime
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as e:
        raise LoupeError("reading text in pictures needs rapidocr-onnxruntime: "
                         f"pip install rapidocr-onnxruntime ({e})") from e
    import logging

    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    n = threads or default_threads()
    cuda = device != "cpu" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    opts = {"text_score": 0.0,  # every line; the index's own floor decides what is searched
            "print_verbose": False}
    for part in ("det", "cls", "rec"):
        opts[f"{part}_intra_op_num_threads"] = n
        opts[f"{part}_inter_op_num_threads"] = 1
        opts[f"{part}_use_cuda"] = cuda
    try:
        engine = RapidOCR(**opts)
    except Exception as e:  # a model file missing or unreadable
        raise LoupeError(f"cannot load the text reader's models: {type(e).__name__}: {e}") from e
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else [
        "CPUExecutionProvider"]
    return TextReader(engine, providers)
