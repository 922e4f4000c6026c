"""Label vocabularies for zero-shot tags and style attribution, and their text vectors.

A vocabulary is a plain text file: one label per line, ``#`` starts a comment, and
``# template: a photo of {}.`` lines give the prompts ({} is the label). Loupe ships
``everyday`` (its default tags), ``imagenet-1k``, ``artists`` and ``art-movements`` in
``datasets/labels/``; any other file can be named by its path.

A label's vector is the renormalised mean of its prompts' text vectors (a prompt
ensemble). Vectors are cached per model and vocabulary under ``DB/labels/``: 1,000
ImageNet names times 8 prompts is 8,000 texts, a minute of CPU for ViT-B-32.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import pathlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loupe.indexer.encoders import Encoder
from loupe.indexer.encoders.base import l2_normalise
from loupe.indexer.errors import LoupeError

# datasets/labels ships inside the wheel as the resource package loupe.labels
# (pyproject's package-dir), so an installed Loupe finds its vocabularies anywhere.
LABELS_PACKAGE = "loupe.labels"
BUILTIN = ("everyday", "imagenet-1k", "artists", "art-movements")
DEFAULT_TAGS = "everyday"
DEFAULT_TEMPLATES = ("a photo of {}.",)
TEXT_BATCH = 256


@dataclass(frozen=True)
class Vocabulary:
    """Labels and the prompt templates that turn each into texts."""

    name: str
    labels: tuple[str, ...]
    templates: tuple[str, ...]

    @property
    def key(self) -> str:
        """Content hash: the cache key part that changes when a label or prompt does."""
        h = hashlib.sha256()
        for part in (*self.templates, "\0", *self.labels):
            h.update(part.encode("utf-8") + b"\n")
        return h.hexdigest()[:16]

    def prompts(self, label: str) -> list[str]:
        """The texts of one label."""
        return [t.replace("{}", label) for t in self.templates]


def parse_vocabulary(text: str, name: str) -> Vocabulary:
    """A vocabulary from a file's text (duplicate labels are kept once, in order)."""
    labels: dict[str, None] = {}
    templates: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            body = line[1:].strip()
            if body.lower().startswith("template:"):
                template = body.split(":", 1)[1].strip()
                if "{}" not in template:
                    raise LoupeError(f"vocabulary {name}: template {template!r} has no {{}} "
                                     "for the label")
                templates.append(template)
            continue
        if line:
            labels.setdefault(line, None)
    if len(labels) < 2:
        raise LoupeError(f"vocabulary {name} has {len(labels)} label(s); shares need at "
                         "least two (one label per line)")
    return Vocabulary(name, tuple(labels), tuple(templates) or DEFAULT_TEMPLATES)


def load_vocabulary(name_or_path: str) -> Vocabulary:
    """A shipped vocabulary by name (see ``BUILTIN``) or any vocabulary file by path."""
    if name_or_path in BUILTIN:
        resource = importlib.resources.files(LABELS_PACKAGE).joinpath(name_or_path + ".txt")
        path = str(resource)
    else:
        path = os.path.abspath(os.path.expanduser(name_or_path))
        if not os.path.isfile(path):
            raise LoupeError(f"no label file {name_or_path} (a text file with one label per "
                             f"line, or one of: {', '.join(BUILTIN)})")
        resource = pathlib.Path(path)
    try:
        text = resource.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LoupeError(f"cannot read label file {path}: {e}") from e
    name = name_or_path if name_or_path in BUILTIN else path
    return parse_vocabulary(text, name)


def _cache_path(cache_dir: str, encoder: Encoder, vocab: Vocabulary) -> str:
    model = hashlib.sha256(repr(sorted(encoder.spec.to_dict().items())).encode()).hexdigest()
    return os.path.join(cache_dir, f"{model[:16]}-{vocab.key}.npy")


def label_vectors(encoder: Encoder, vocab: Vocabulary,
                  cache_dir: str | None = None) -> np.ndarray:
    """(labels, dim) unit vectors: each label's prompt ensemble, renormalised.

    With ``cache_dir`` the vectors are read from / written to a file keyed by the model
    (its recorded spec) and the vocabulary's content.
    """
    path = _cache_path(cache_dir, encoder, vocab) if cache_dir else None
    if path and os.path.isfile(path):
        try:
            vecs = np.load(path)
            if vecs.shape == (len(vocab.labels), encoder.dim):
                return vecs
        except (OSError, ValueError):
            pass  # damaged: recompute
    texts = [p for label in vocab.labels for p in vocab.prompts(label)]
    parts = [encoder.embed_texts(texts[i:i + TEXT_BATCH])
             for i in range(0, len(texts), TEXT_BATCH)]
    per_prompt = np.concatenate(parts).reshape(len(vocab.labels), len(vocab.templates), -1)
    vecs = l2_normalise(per_prompt.mean(axis=1))
    if path:
        try:
            os.makedirs(cache_dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, vecs)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only index still answers
    return vecs


def shares(image_vectors: np.ndarray, label_vecs: np.ndarray, logit_scale: float) -> np.ndarray:
    """(N, labels) percentages: softmax over the labels of the scaled cosine
    similarities, as CLIP's zero-shot classifier does; each row sums to 100."""
    logits = logit_scale * (np.asarray(image_vectors, np.float32) @ label_vecs.T)
    logits -= logits.max(axis=1, keepdims=True)
    # float32 exp is ~25x faster than float64 here (SIMD); sums are taken in float64,
    # so shares differ from a float64 softmax by < 1e-5 percentage points.
    p = np.exp(logits, out=logits)
    p *= (100.0 / p.sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return p


@dataclass
class Tag:
    """One label and its share (percent)."""

    label: str
    share: float


def top_labels(row: np.ndarray, labels: Sequence[str], top: int) -> tuple[list[Tag], float]:
    """The ``top`` largest shares of one row of :func:`loupe.search.explain.labels.shares`, and the
    rest's total."""
    top = max(1, min(top, len(labels)))
    order = np.argsort(-row, kind="stable")[:top]
    tags = [Tag(labels[i], float(row[i])) for i in order]
    return tags, max(0.0, 100.0 - sum(t.share for t in tags))


def top_shares(share_rows: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, shares) of the ``top`` largest shares of each row, largest first:
    :func:`top_labels` for a whole batch at once (tagging an index)."""
    top = max(1, min(top, share_rows.shape[1]))
    part = np.argpartition(-share_rows, top - 1, axis=1)[:, :top]
    vals = np.take_along_axis(share_rows, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
