"""The JSON API's request and response bodies (pydantic 2): what clients send and get.

The request models are the ones bodies and query strings are validated with; the
response models document what the routes send (they send the library's own
``as_dict()`` data, which these models describe field for field). The OpenAPI document
(ui/api/openapi.py) is built from their JSON schemas.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

KIND = Literal["photo", "frame", "video", "audio"]


class _Strict(BaseModel):
    """Unknown fields are refused (a misspelt filter must not be ignored silently)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# -- requests ----------------------------------------------------------------------------
class TextTerm(_Strict):
    """Words, as one term of the query."""

    kind: Literal["text"]
    text: str = Field(description="the words (never taken for a file name)")
    weight: float = Field(1.0, description="the term's weight (negative: away from it)")


class FileTerm(_Strict):
    """A picture or a sound, sent in the request, as one term of the query."""

    kind: Literal["image", "audio"]
    data: str = Field(description="base64 of the file's bytes (JPEG, PNG, WebP, GIF, TIFF "
                                  "or BMP for a picture; a sound file for audio)",
                      json_schema_extra={"contentEncoding": "base64"})
    name: str = Field(description="the file's name: its extension, and how messages "
                                  "name it")
    weight: float = 1.0


class OcrTerm(_Strict):
    """Text shown in the pictures (read at indexing time, ``loupe index --ocr``), as one
    term: a filter, as ``ocr:"hotel lisboa"`` in ``q``. Only pictures showing it are
    kept (weight -1: none showing it); the other terms rank them, or, alone, how well
    the text matches."""

    kind: Literal["ocr"]
    text: str = Field(description="the words shown (any case and accents; one wrong "
                                  "letter in a long word still matches)")
    weight: float = Field(1.0, description="1: only pictures showing the text; -1: "
                                           "leave out those showing it (no other weight)")


Term = Annotated[TextTerm | FileTerm | OcrTerm, Field(discriminator="kind")]


class SearchRequest(_Strict):
    """A search, with every filter and sort of ``loupe search`` (the flags of the same
    names, read by the same code). Some query is needed: ``q``, ``terms`` or both."""

    q: str | None = Field(None, description="query arithmetic in words, as the UI's box: "
                                            '"dog + 2:beach - people" (never a file); '
                                            'ocr:"hotel lisboa" (or ocr:bar) keeps only '
                                            "pictures showing that text")
    terms: list[Term] = Field(default_factory=list,
                              description="more terms, after q's: words, pictures, sounds, "
                                          "text shown")
    k: int = Field(10, description="how many hits (loupe search -k)")
    offset: int = Field(0, ge=0, description="paging: hits [offset, offset + k) of the "
                                             "same ranking")
    kind: KIND | None = Field(None, description="only this kind (video = frame)")
    frames: bool = Field(False, description="every frame / sound window, not one hit per "
                                            "file")
    folder: str | None = Field(None, description="only files under this folder")
    since: str | None = Field(None, description="modified on or after this day "
                                                "(YYYY-MM-DD)")
    until: str | None = Field(None, description="modified on or before this day")
    taken_since: str | None = Field(None, description="taken on or after (2021-06-01 or "
                                                      "2021-06-01T14:00, camera clock)")
    taken_until: str | None = Field(None, description="taken on or before (a day counts "
                                                      "whole)")
    or_modified: bool = Field(False, description="no capture time: the modification time "
                                                 "counts")
    near: str | None = Field(None, description='taken near a town ("Lisbon") or LAT,LON')
    within: float = Field(25.0, description="near's radius, km")
    camera: str | None = Field(None, description="camera make/model holds this (any case)")
    lens: str | None = Field(None, description="lens holds this (any case)")
    sort: Literal["relevance", "newest", "oldest"] = "relevance"
    min_score: float | None = Field(None, description="only hits scoring (cosine) at "
                                                      "least this")
    where: list[str] = Field(default_factory=list,
                             description='only items tagged with every label: "dog" or '
                                         '"tag=dog" (as --where)')
    hide_duplicates: float | None = Field(None, description="hide near duplicates of "
                                                            "better hits at this cosine "
                                                            "(0.95 as the CLI's default)")


class GroundingRequest(_Strict):
    """What to ask Kosmos-2 about a stored picture."""

    prompt: str | None = Field(None, description="the prompt (default: a brief "
                                                 "description of the picture)")


# Query strings (validated as models too; each field is one parameter).
class SimilarQuery(_Strict):
    k: int = Field(10, description="how many hits")
    offset: int = Field(0, ge=0, description="paging, as in a search")
    kind: KIND | None = Field(None, description="only this kind (video = frame)")
    frames: bool = Field(False, description="every frame / sound window")


class ThumbnailQuery(_Strict):
    side: int = Field(320, ge=16, le=1600, description="longest side, pixels")


class TagsQuery(_Strict):
    vocabulary: str | None = Field(None, description="a shipped vocabulary (everyday, "
                                                     "imagenet-1k, ...) or the index's own "
                                                     "(default: the index's, else everyday)")
    top: int = Field(5, description="how many labels")


class AttributionQuery(_Strict):
    top: int = Field(5, description="how many artists and movements")
    k: int = Field(10, description="nearest reference works that vote")
    temperature: float = Field(0.05, description="softness of the vote")


class DuplicatesQuery(_Strict):
    threshold: float = Field(0.95, description="cosine that counts as a near duplicate")
    limit: int = Field(100, ge=1, le=10_000, description="groups of each sort, at most")
    kind: Literal["photo", "video", "all"] = Field("photo", description="photos, video "
                                                                         "moments, or all")
    folder: str | None = Field(None, description="only files under this folder")


# -- responses ---------------------------------------------------------------------------
class Capture(BaseModel):
    """What the camera knew (None where unknown)."""

    taken_at: float | None = Field(None, description="UTC seconds, when the file says its "
                                                     "zone")
    taken_local: str | None = Field(None, description="the camera's wall clock, ISO 8601")
    lat: float | None = None
    lon: float | None = None
    alt: float | None = Field(None, description="metres")
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    place: str | None = Field(None, description='nearest town: "Lisbon, Lisbon, PT"')


class Moment(BaseModel):
    """One matching moment of a video or sound file."""

    id: str
    timestamp: float
    score: float
    kind: str
    end: float | None = None


class TextLine(BaseModel):
    """One line of text read in a picture that an ``ocr:`` term matched."""

    text: str = Field(description="the line as read")
    score: float = Field(description="the reader's confidence, 0 to 1")
    box: list[float] = Field(min_length=8, max_length=8,
                             description="its four corners x1, y1, ..., x4, y4, clockwise "
                                         "from the top left, in the picture's pixels (the "
                                         "original's, upright)")
    timestamp: float | None = Field(None, description="seconds into the video (a frame's "
                                                      "line); null for a photo")
    item: str = Field(description="the id of the photo or frame it was read in")
    query: str | None = Field(None, description="the ocr: term's text it matched")


class Hit(Capture):
    """One hit: a photo, or a video / sound file with its best moments (with frames:
    one frame or sound window)."""

    id: str
    path: str
    kind: str
    score: float
    timestamp: float | None = None
    end: float | None = None
    moments: list[Moment] = Field(default_factory=list)
    text: list[TextLine] | None = Field(None, description="the lines an ocr: term matched "
                                                          "(null: no ocr: term)")
    text_score: float | None = Field(None, description="how well the text matched, 0 to 1 "
                                                       "(null: no ocr: term)")


class SearchResponse(BaseModel):
    """A search's hits [offset, offset + k) and how it went."""

    hits: list[Hit]
    column: str = Field(description="the model column that answered")
    seconds: float = Field(description="the search itself")
    load_seconds: float = Field(description="loading the model and index (0 once loaded)")
    hidden: int = Field(description="near duplicates hidden (hide_duplicates)")
    offset: int
    k: int


class Share(BaseModel):
    label: str
    share: float = Field(description="percent")


class ItemRecord(Capture):
    """A stored item: where it comes from, what the camera knew, its tags."""

    id: str
    path: str
    kind: str = Field(description="photo, frame or audio")
    timestamp: float | None = Field(None, description="seconds into its file (moments)")
    end: float | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = Field(None, description="the file's size in bytes, as indexed")
    mtime: float | None = Field(None, description="the file's modification time, as "
                                                  "indexed (epoch seconds)")
    indexed_at: float | None = None
    tags: list[Share] | None = Field(None, description="stored tags (an index built with "
                                                       "--tags)")
    thumbnail: str = Field(description="its thumbnail's path on this server")
    file: str = Field(description="its file's path on this server")


class Model(BaseModel):
    column: str
    backend: str
    model: str
    weights: str | None = None
    dim: int
    modalities: list[str]


class Status(BaseModel):
    """The index this server answers for."""

    db: str
    version: int = Field(description="the store's version (moves on with each run)")
    items: int
    counts: dict[str, int] = Field(description="items per kind")
    models: list[Model]
    folders: int = Field(description="folders holding indexed files")
    server: Literal["serve", "ui"]
    loupe: str = Field(description="Loupe's version")
    watch: dict | None = Field(None, description="what watching the folders does (null "
                                                 "when not watching)")


class Entity(BaseModel):
    phrase: str
    start: int
    end: int
    boxes: list[list[float]] = Field(description="(x0, y0, x1, y1) in the picture's pixels")


class Grounding(BaseModel):
    """Kosmos-2's answer: a caption whose phrases cite boxes."""

    id: str
    caption: str
    entities: list[Entity]
    prompt: str
    model: str
    width: int
    height: int
    cached: bool


class Tags(BaseModel):
    """Zero-shot tags of a stored picture (as ``loupe tag``)."""

    target: dict
    tags: list[Share]
    other: float = Field(description="the share of every other label")
    vocabulary: str
    model: str
    stored: list[Share] | None = Field(None, description="tags stored at index time")


class Evidence(BaseModel):
    collection: str
    path: str
    similarity: float
    weight: float
    key: str = ""


class Attribution(BaseModel):
    """Whose style (as ``loupe attribute``)."""

    target: dict
    model: str
    artists: list[Share]
    artists_other: float
    movements: list[Share]
    movements_other: float
    references: list[Share]
    evidence: list[Evidence]


class DupItem(BaseModel):
    id: str
    path: str
    kind: str
    timestamp: float | None
    fingerprint: str | None
    similarity: float


class DupGroup(BaseModel):
    items: list[DupItem]
    exact: list[list[str]]


class Duplicates(BaseModel):
    """Groups of identical files and of near duplicates (as ``loupe duplicates``)."""

    column: str
    threshold: float
    kind: str | None
    compared: int
    exact: list[DupGroup]
    near: list[DupGroup]
    exact_total: int = Field(description="identical sets in all (beyond limit too)")
    near_total: int


class ErrorBody(BaseModel):
    status: int
    message: str = Field(description="one line: what the CLI prints after 'loupe: error: '")


class Error(BaseModel):
    """Every error answer."""

    error: ErrorBody


REQUESTS = (SearchRequest, GroundingRequest)
RESPONSES = (SearchResponse, ItemRecord, Status, Grounding, Tags, Attribution, Duplicates,
             Error)
