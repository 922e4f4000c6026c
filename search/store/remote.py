"""Tables on object storage: connecting with the credentials of the environment, and an
object store's refusal said in one line.

LanceDB (Lance's object_store) reads its credentials and endpoint from the environment:
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``), ``AWS_REGION``,
and for an S3-compatible server ``AWS_ENDPOINT_URL`` (with ``AWS_ALLOW_HTTP=true`` when it
is plain http); ``GOOGLE_*`` and ``AZURE_*`` likewise. Loupe passes none of them itself.
Its errors are long Rust debug dumps (a retry record with the server's XML body): what a
person needs of one is the status and the server's code and message.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlparse

import lancedb

from loupe.indexer.errors import LoupeError

CREDENTIALS = ("object storage takes its credentials from the environment "
               "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL; "
               "GOOGLE_* and AZURE_* likewise)")


def is_remote(uri: str | None) -> bool:
    """Whether ``uri`` names object storage (s3://, gs://, az://...), not a folder."""
    if not uri:
        return False
    scheme = urlparse(uri).scheme
    return len(scheme) > 1 and scheme != "file"  # "C:\..." has a one-letter scheme


def _tag(name: str, text: str) -> str | None:
    m = re.search(rf"<{name}>(.*?)</{name}>", text, re.S)
    return m.group(1).strip() if m else None


def storage_error(uri: str, error: BaseException) -> LoupeError:
    """One line saying why the tables at ``uri`` could not be reached: the server's status,
    code and message when it answered, else the kind of failure."""
    text = str(error)
    status = re.search(r"status: (\d{3})", text)
    code, message = _tag("Code", text), _tag("Message", text)
    if code or status:
        said = " ".join(x for x in (status and status.group(1), code) if x)
        if message:
            said += f" ({message})"
        why = said
    elif "BadScheme" in text:
        why = "the endpoint is plain http: set AWS_ALLOW_HTTP=true to allow it"
    elif "Connect" in text or "onnection refused" in text or "dns error" in text:
        why = "no object store answers at its endpoint"
    else:
        why = " ".join(text.split())[:300]
    return LoupeError(f"cannot reach the tables at {uri}: {why}; {CREDENTIALS}")


def connect(uri: str, read_consistency_interval: timedelta | None = None):
    """``lancedb.connect(uri)`` (which lists the store: credentials are tried here), its
    refusal a one-line :class:`LoupeError` when ``uri`` is object storage."""
    try:
        return lancedb.connect(uri, read_consistency_interval=read_consistency_interval)
    except (ValueError, OSError, RuntimeError) as e:
        if not is_remote(uri):
            raise
        raise storage_error(uri, e) from e


def list_tables(db, uri: str) -> set[str]:
    """The names of the tables of connection ``db`` (at ``uri``), a refusal in one line."""
    try:
        return set(db.list_tables().tables)
    except (ValueError, OSError, RuntimeError) as e:
        if not is_remote(uri):
            raise
        raise storage_error(uri, e) from e
