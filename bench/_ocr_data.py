"""Data for bench_ocr.py (not a benchmark itself): a frequency-ranked English vocabulary,
synthetic OCR lines, pictures with rendered words of known text, and a video with title
cards between photo shots.

- ``vocabulary``: whole-word tokens of open_clip's BPE vocabulary (it ships with
  open_clip; its merges are in order of frequency in web text, so the rank is a real
  usage rank), word-final fragments ("ing", "tion") dropped; filtered by
  ``/usr/share/dict/words`` when that file exists.
- ``synthetic_readings``: shop-sign-like readings (1-5 words a line, about 5 lines a
  picture, Zipf-distributed words, signs in upper/title/lower case, prices, some words
  glued together as OCR reads them).
- ``render_set``: photos of the corpus with words drawn on them in real fonts at several
  sizes, angles and contrasts, plus the same photos without text, with the truth.
- ``title_card_video``: an H.264 mp4 of photo shots with title cards held between them.
"""

from __future__ import annotations

import collections
import gzip
import math
import os
import random
from dataclasses import dataclass, field

import numpy as np

CORPUS = os.environ.get("LOUPE_CORPUS", "/work/shared/corpus")
PHOTOS = os.path.join(CORPUS, "photos")
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
              "DejaVuSansCondensed-Bold.ttf", "LiberationSans-Regular.ttf",
              "LiberationSans-Bold.ttf", "LiberationSerif-Regular.ttf",
              "LiberationMono-Bold.ttf", "LiberationSansNarrow-Bold.ttf")
# Photos of the corpus used as backgrounds (page.png and astronaut.png show real text, so
# they are the real text images instead; the multipage TIFF and the GIF are formats).
BACKGROUNDS = ("brick.png", "camera.png", "chelsea.png", "coffee.png",
               "coins.png", "color.png", "grass.png", "gravel.png", "horse.png",
               "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
               "retina.jpg", "rocket.jpg", "logo.png")
# page.png's text, read by eye from the picture (the ground truth of the real text image).
PAGE_TRUTH = [
    "Region-based segmentation",
    "Let us first determine markers of the coins and the",
    "background. These markers are pixels that we can label",
    "unambiguously as either object or background. Here,",
    "the markers are found at the two extreme parts of the",
    "histogram of grey values:",
    ">>> markers = np.zeros_like(coins)",
]
# astronaut.png: the crew names on the mission patch, read by eye (small, curved text).
ASTRONAUT_TRUTH = ["Collins", "Ashby", "Coleman", "Hawley", "Tognini"]


# -- vocabulary ------------------------------------------------------------------------
def vocabulary(n: int = 50_000) -> tuple[list[str], str]:
    """(up to ``n`` lower-case English words, most frequent first; where they came from)."""
    import open_clip

    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1:]
    words, seen = [], set()
    for line in merges:
        parts = line.split()
        if len(parts) != 2 or not parts[1].endswith("</w>"):
            continue
        w = parts[0] + parts[1][:-4]
        if w.isascii() and w.isalpha() and 3 <= len(w) <= 16 and w not in seen:
            seen.add(w)
            words.append(w)
    # A token that ends many other words is a suffix ("ing", "ation"), not a word.
    ends = collections.Counter()
    for w in words:
        for i in range(1, len(w) - 2):
            ends[w[i:]] += 1
    vowels = set("aeiouy")
    words = [w for w in words if ends[w] < 60 and vowels & set(w)]
    source = "open_clip BPE vocabulary (whole-word tokens, frequency order)"
    dict_path = "/usr/share/dict/words"
    if os.path.exists(dict_path):
        with open(dict_path, encoding="utf-8", errors="ignore") as f:
            real = {w.strip().lower() for w in f}
        words = [w for w in words if w in real]
        source += ", filtered by /usr/share/dict/words"
    return words[:n], source


class Zipf:
    """Draws word ranks with P(rank r) ~ 1 / (r + 2.7)^s (Zipf-Mandelbrot)."""

    def __init__(self, n: int, s: float = 1.07, seed: int = 0):
        w = 1.0 / np.power(np.arange(n) + 2.7, s)
        self.cdf = np.cumsum(w / w.sum())
        self.rng = np.random.default_rng(seed)

    def draw(self, k: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, self.rng.random(k)), len(self.cdf) - 1)


# -- synthetic OCR lines ---------------------------------------------------------------
@dataclass
class Readings:
    """Synthetic readings: ``lines[i]`` are the lines read in picture ``i``."""

    lines: list[list[str]]
    words: list[str]  # the vocabulary, by rank
    counts: np.ndarray  # how many lines hold each word (by rank)
    glued: list[tuple[int, str, str]]  # (picture, glued token, a word inside it)

    @property
    def n_lines(self) -> int:
        return sum(len(x) for x in self.lines)


def synthetic_readings(n_lines: int, words: list[str], seed: int = 0,
                       glue_share: float = 0.08) -> Readings:
    """About ``n_lines`` lines, 1-5 words each, 1-9 lines a picture (mean 5)."""
    rng = random.Random(seed)
    zipf = Zipf(len(words), seed=seed)
    ranks = zipf.draw(n_lines * 3 + 10).tolist()
    at = 0
    counts = np.zeros(len(words), dtype=np.int64)
    out: list[list[str]] = []
    glued: list[tuple[int, str, str]] = []
    made = 0
    while made < n_lines:
        pic: list[str] = []
        for _ in range(min(rng.randint(1, 9), n_lines - made)):
            k = rng.choices((1, 2, 3, 4, 5), weights=(30, 30, 20, 12, 8))[0]
            if at + k > len(ranks):
                ranks.extend(zipf.draw(n_lines).tolist())
            line_ranks = ranks[at:at + k]
            at += k
            for r in set(line_ranks):
                counts[r] += 1
            toks = [words[r] for r in line_ranks]
            style = rng.random()
            if style < 0.3:
                toks = [t.upper() for t in toks]
            elif style < 0.7:
                toks = [t.capitalize() for t in toks]
            if len(toks) >= 2 and rng.random() < glue_share:  # OCR dropped a space
                i = rng.randrange(len(toks) - 1)
                joint = "-" if rng.random() < 0.3 else ""
                tok = toks[i] + joint + toks[i + 1]
                glued.append((len(out), tok, words[line_ranks[i + 1]]))
                toks[i:i + 2] = [tok]
            if rng.random() < 0.05:
                toks.append(f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}")
            pic.append(" ".join(toks))
        made += len(pic)
        out.append(pic)
    return Readings(out, words, counts, glued)


def misspell(word: str, rng: random.Random, changes: int = 1) -> str:
    """``word`` with ``changes`` letters replaced (never the first), different each."""
    letters = list(word)
    spots = rng.sample(range(1, len(word)), min(changes, len(word) - 1))
    for i in spots:
        letters[i] = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != letters[i]])
    return "".join(letters)


# -- pictures with known text ----------------------------------------------------------
def fonts() -> list[str]:
    out = []
    for name in FONT_NAMES:
        for d in FONT_DIRS:
            p = os.path.join(d, name)
            if os.path.exists(p):
                out.append(p)
    if not out:
        raise SystemExit("no TrueType fonts found under " + ", ".join(FONT_DIRS))
    return out


def background(name: str, size: tuple[int, int], rng: random.Random):
    """A photo of the corpus as RGB, cropped at random and resized to ``size``."""
    from PIL import Image

    im = Image.open(os.path.join(PHOTOS, name))
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(flat, im)
    im = im.convert("RGB")
    w, h = im.size
    tw, th = size
    scale = rng.uniform(1.0, 1.4) * max(tw / w, th / h)
    im = im.resize((max(tw, round(w * scale)), max(th, round(h * scale))))
    x = rng.randint(0, im.width - tw)
    y = rng.randint(0, im.height - th)
    return im.crop((x, y, x + tw, y + th))


@dataclass
class Rendered:
    """One picture of the quality set and its truth."""

    file: str
    words: list[str]  # the words drawn (empty: a picture without text)
    font: str = ""
    size: int = 0  # font size in pixels
    angle: int = 0
    contrast: str = ""
    photo: str = ""
    box: list[float] = field(default_factory=list)  # the text's corners (8 floats)


def draw_words(img, text: str, font_path: str, px: int, angle: float, contrast: str,
               rng: random.Random) -> list[float]:
    """Draw ``text`` on ``img`` (in place); returns its 4 corners x1,y1,...,x4,y4."""
    from PIL import Image, ImageDraw, ImageFont, ImageStat

    font = ImageFont.truetype(font_path, px)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, t, r, b = probe.textbbox((0, 0), text, font=font)
    pad = max(4, px // 4)
    w, h = r - left + 2 * pad, b - t + 2 * pad
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    # Where it goes (before rotation the layer's centre): chosen so the rotated layer fits.
    rad = math.radians(angle)
    rw = abs(w * math.cos(rad)) + abs(h * math.sin(rad))
    rh = abs(w * math.sin(rad)) + abs(h * math.cos(rad))
    if rw > img.width - 8 or rh > img.height - 8:
        raise ValueError("text does not fit")
    cx = rng.uniform(rw / 2 + 4, img.width - rw / 2 - 4)
    cy = rng.uniform(rh / 2 + 4, img.height - rh / 2 - 4)
    region = img.crop((int(cx - rw / 2), int(cy - rh / 2), int(cx + rw / 2), int(cy + rh / 2)))
    lum = ImageStat.Stat(region.convert("L")).mean[0]
    if contrast == "sign":  # dark letters on a light plate, as on a shop sign
        d.rectangle((0, 0, w - 1, h - 1), fill=(245, 240, 225, 255))
        colour = (25, 25, 35, 255)
    elif contrast == "high":  # letters straight on the photo, far from its brightness
        v = 15 if lum > 128 else 245
        colour = (v, v, v, 255)
    else:  # "low": letters close to the brightness around them
        v = int(lum + (55 if lum < 128 else -55))
        colour = (v, v, v, 255)
    d.text((pad - left, pad - t), text, font=font, fill=colour)
    rot = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
    ox, oy = round(cx - rot.width / 2), round(cy - rot.height / 2)
    img.paste(rot, (ox, oy), rot)
    # The unrotated layer's corners around its centre, rotated like PIL does (counter-
    # clockwise on screen for a positive angle).
    corners = []
    for x, y in ((0, 0), (w, 0), (w, h), (0, h)):
        dx, dy = x - w / 2, y - h / 2
        corners += [cx + dx * math.cos(rad) + dy * math.sin(rad),
                    cy - dx * math.sin(rad) + dy * math.cos(rad)]
    return corners


def pick_words(words: list[str], n: int, rng: random.Random, lo: int = 300,
               hi: int = 20_000, min_len: int = 5, max_len: int = 12) -> list[str]:
    """``n`` distinct words of which none holds another (a substring would be a true hit)."""
    pool = [w for w in words[lo:hi] if min_len <= len(w) <= max_len]
    rng.shuffle(pool)
    chosen: list[str] = []
    for w in pool:
        if all(w not in c and c not in w for c in chosen) and all(
                w not in t.lower() for t in PAGE_TRUTH):
            chosen.append(w)
            if len(chosen) == n:
                break
    return chosen


def render_set(out_dir: str, words: list[str], per_cell: int = 2, no_text: int = 40,
               seed: int = 0, size: tuple[int, int] = (640, 480)) -> list[Rendered]:
    """Pictures with one or two rendered words for every (size, angle, contrast) cell,
    ``per_cell`` each, and ``no_text`` photo crops without text; written to ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(seed)
    font_list = fonts()
    sizes, angles, contrasts = (16, 28, 48), (0, 10, 25), ("sign", "high", "low")
    cells = [(s, a, c) for s in sizes for a in angles for c in contrasts]
    n_words = len(cells) * per_cell * 2
    pool = pick_words(words, n_words, rng)
    out: list[Rendered] = []
    i = 0
    for s, a, c in cells:
        for _ in range(per_cell):
            two = rng.random() < 0.5
            text_words = [pool.pop(), pool.pop()] if two else [pool.pop()]
            style = rng.random()
            shown = [w.upper() if style < 0.4 else w.capitalize() if style < 0.8 else w
                     for w in text_words]
            for _attempt in range(20):
                photo = rng.choice(BACKGROUNDS)
                img = background(photo, size, rng)
                font = rng.choice(font_list)
                try:
                    box = draw_words(img, " ".join(shown), font, s, a, c, rng)
                    break
                except ValueError:
                    continue
            name = f"text-{i:03d}-s{s}-a{a}-{c}.jpg"
            img.save(os.path.join(out_dir, name), quality=90)
            out.append(Rendered(name, text_words, os.path.basename(font), s, a, c, photo, box))
            i += 1
    for j in range(no_text):
        photo = BACKGROUNDS[j % len(BACKGROUNDS)]
        img = background(photo, size, rng)
        name = f"plain-{j:03d}-{os.path.splitext(photo)[0]}.jpg"
        img.save(os.path.join(out_dir, name), quality=90)
        out.append(Rendered(name, [], photo=photo))
    return out


# -- a video with title cards ------------------------------------------------------------
@dataclass
class Card:
    title: str
    start: float
    end: float


def title_card_video(path: str, titles: list[str], shot_s: float = 4.0,
                     holds: tuple[float, ...] = (3.0, 5.0, 4.0, 5.0), fps: int = 25,
                     size: tuple[int, int] = (640, 360), seed: int = 0) -> list[Card]:
    """Photo shots (slow pans) and title cards (white words held still) in turn:
    shot, card, shot, card, ..., shot. Returns the cards with their times."""
    import av
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    w, h = size
    font_path = [f for f in fonts() if "Bold" in f][0]
    cards: list[Card] = []
    photos = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
              "motorcycle_left.png", "hubble_deep_field.jpg")
    segments: list[tuple[str, float, object]] = []
    t = 0.0
    for i in range(len(titles) + 1):
        big = background(photos[i % len(photos)], (int(w * 1.3), int(h * 1.3)), rng)
        segments.append(("shot", shot_s, big))
        t += shot_s
        if i < len(titles):
            hold = holds[i % len(holds)]
            card = Image.new("RGB", size, (10, 10, 30) if i % 2 == 0 else (120, 20, 20))
            d = ImageDraw.Draw(card)
            font = ImageFont.truetype(font_path, 46)
            left, tp, r, b = d.textbbox((0, 0), titles[i], font=font)
            d.text(((w - (r - left)) / 2 - left, (h - (b - tp)) / 2 - tp), titles[i], font=font,
                   fill=(250, 250, 240))
            segments.append(("card", hold, card))
            cards.append(Card(titles[i], t, t + hold))
            t += hold
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp.mp4"
    with av.open(tmp, "w") as c:
        v = c.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "20"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        for kind, seconds, img in segments:
            n = round(seconds * fps)
            for k in range(n):
                if kind == "shot":  # a slow pan over the enlarged photo
                    f = k / max(1, n - 1)
                    x = round(f * (img.width - w))
                    y = round(f * (img.height - h) / 2)
                    frame_img = img.crop((x, y, x + w, y + h))
                else:
                    frame_img = img
                frame = av.VideoFrame.from_ndarray(np.asarray(frame_img), format="rgb24")
                for p in v.encode(frame):
                    c.mux(p)
        for p in v.encode():
            c.mux(p)
    os.replace(tmp, path)
    return cards
