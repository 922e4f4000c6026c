"""Thumbnails and media of stored items, by item id only (for the web UI and the CLI).

Nothing here takes a path from a person: an item id is looked up in the store, and only
files that are rows of the index, and still the files that were indexed, are ever opened
(``loupe.search.served``). Thumbnails are made once and kept in ``DB/thumbs/`` under the
item's content (fingerprint, and time for a video frame), so a renamed file keeps its
thumbnail and an edited one gets a new one.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile

from PIL import Image

from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import ItemKind
from loupe.indexer.media.image import ImageDecodeError, upright_image_file
from loupe.search.explain.attribution import reference_rows
from loupe.search.served import item_row, open_item
from loupe.search.store import Store, sql_str

THUMB_SIZE = 320  # longest side, pixels


def item_path(store: Store, item_id: str) -> str:
    """The stored path of an item's file, once checked to be the file that was indexed
    (:func:`loupe.search.served.open_item`); what reads it should rather read the checked
    file itself, as :func:`item_picture` does."""
    with open_item(store, item_id) as f:
        return f.path


def item_picture(store: Store, item_id: str) -> Image.Image:
    """An item's picture at full size (a photo, or a video frame at its timestamp),
    decoded from its file only while that is the file that was indexed."""
    from loupe.indexer.media.video import VideoDecodeError, frame_at

    if item_row(store, item_id)["kind"] == ItemKind.AUDIO:
        raise LoupeError("a sound window has no picture")
    with open_item(store, item_id) as f:
        row = f.row
        try:
            if row["kind"] == ItemKind.FRAME:
                return frame_at(f.fd_path(), row["timestamp"])[0]
            return upright_image_file(f.fd_path())
        except (ImageDecodeError, VideoDecodeError) as e:
            raise LoupeError(f"cannot read {f.path}: {e}") from e


def thumbnail(store: Store, item_id: str, size: int = THUMB_SIZE) -> bytes:
    """JPEG bytes of an item's thumbnail (longest side ``size``), made once and cached."""
    row = item_row(store, item_id)
    ts = "" if row["timestamp"] is None else f"@{row['timestamp']:.6f}"

    def make() -> Image.Image:
        return _sound_tile(size) if row["kind"] == ItemKind.AUDIO else item_picture(store, item_id)

    return _cached_jpeg(store, f"{row['fingerprint']}{ts}:{size}", make, size)


def reference_thumbnail(store: Store, key: str, size: int = THUMB_SIZE) -> bytes:
    """JPEG thumbnail of a registered reference work (style attribution's evidence), by
    its key: like items, only files registered in the index are opened."""
    if not isinstance(key, str) or not key.isalnum():
        raise LoupeError("not a reference work")
    rows = reference_rows(store, f"key = {sql_str(key)}", ["path", "fingerprint"]).to_pylist()
    if not rows:
        raise LoupeError("no such reference work in this index")
    path = rows[0]["path"]

    def make() -> Image.Image:
        try:
            return upright_image_file(path)
        except (ImageDecodeError, OSError) as e:
            raise LoupeError(f"cannot read {path}: {e}") from e

    return _cached_jpeg(store, f"{rows[0]['fingerprint']}:{size}", make, size)


def _cached_jpeg(store: Store, content: str, make, size: int) -> bytes:
    """JPEG bytes kept in ``DB/thumbs`` under ``content`` (made by ``make`` once)."""
    key = hashlib.blake2b(content.encode(), digest_size=16).hexdigest()
    folder = os.path.join(store.dir, "thumbs", key[:2])
    path = os.path.join(folder, key + ".jpg")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        pass
    image = make()
    image.thumbnail((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=85)
    data = buf.getvalue()
    try:  # cached atomically; a read-only index still serves thumbnails
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass
    return data


def _sound_tile(size: int) -> Image.Image:
    """A plain tile standing for a sound window."""
    from PIL import ImageDraw

    im = Image.new("RGB", (size, size * 3 // 4), (40, 44, 52))
    d = ImageDraw.Draw(im)
    w, h = im.size
    for i in range(24):  # a stylised waveform
        x = w * (i + 0.5) / 24
        amp = h * 0.35 * abs(((i * 7) % 11) / 11 - 0.5) * 2
        d.line([(x, h / 2 - amp), (x, h / 2 + amp)], fill=(120, 200, 255), width=max(2, w // 80))
    return im
