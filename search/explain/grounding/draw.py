"""Drawing grounded phrases on pictures: boxes with labels, and contact sheets.

Shared by ``loupe ground`` (annotated images, a video's contact sheet) and the web UI.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from loupe.search.explain.grounding.kosmos2 import Grounding

# Distinct colours that read on light and dark pictures (Okabe-Ito + a few).
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
           (213, 94, 0), (204, 121, 167), (255, 255, 255), (255, 64, 64), (120, 255, 120)]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def draw_grounding(image: Image.Image, grounding: Grounding) -> Image.Image:
    """A copy of ``image`` with each entity's boxes outlined and labelled by its phrase.

    Boxes are in the pixels of the picture the grounding was made on
    (``grounding.width`` x ``grounding.height``) and are scaled to ``image``'s size, so a
    thumbnail can be drawn on as well as the original.
    """
    out = image.convert("RGB")  # always a copy
    sx = out.width / max(1, grounding.width)
    sy = out.height / max(1, grounding.height)
    side = min(out.width, out.height)
    line = max(2, round(side / 150))
    font = _font(max(12, round(side / 28)))
    draw = ImageDraw.Draw(out)
    for i, ent in enumerate(grounding.entities):
        colour = PALETTE[i % len(PALETTE)]
        for x0, y0, x1, y1 in ent.boxes:
            box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
            draw.rectangle(box, outline=colour, width=line)
            label = ent.phrase.strip()
            if not label:
                continue
            tx, ty = box[0] + line, box[1] + line
            left, top, right, bottom = draw.textbbox((tx, ty), label, font=font)
            draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=colour)
            dark = sum(colour) > 382
            draw.text((tx, ty), label, fill=(0, 0, 0) if dark else (255, 255, 255), font=font)
    return out


def contact_sheet(tiles: Sequence[tuple[Image.Image, str]], columns: int = 4,
                  tile_width: int = 320, pad: int = 6) -> Image.Image:
    """A grid of pictures, each with a caption line under it (e.g. ``12.0 s: a cat``)."""
    if not tiles:
        raise ValueError("a contact sheet needs at least one picture")
    columns = max(1, min(columns, len(tiles)))
    font = _font(14)
    scaled = []
    for im, caption in tiles:
        h = max(1, round(im.height * tile_width / max(1, im.width)))
        scaled.append((im.convert("RGB").resize((tile_width, h), Image.BILINEAR), caption))
    text_h = 20
    rows = [scaled[i:i + columns] for i in range(0, len(scaled), columns)]
    row_h = [max(im.height for im, _ in r) + text_h for r in rows]
    sheet = Image.new("RGB", (columns * (tile_width + pad) + pad,
                              sum(row_h) + pad * (len(rows) + 1)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for r, h in zip(rows, row_h, strict=True):
        x = pad
        for im, caption in r:
            sheet.paste(im, (x, y))
            text = caption if len(caption) <= 48 else caption[:47] + "…"
            draw.text((x, y + im.height + 3), text, fill=(235, 235, 235), font=font)
            x += tile_width + pad
        y += h + pad
    return sheet
