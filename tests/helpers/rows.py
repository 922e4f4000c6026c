"""Comparing stored rows: the same ids, and every column equal (vectors within a
tolerance)."""

from __future__ import annotations

import numpy as np


def assert_same_rows(got: list[dict], want: list[dict], atol: float = 1e-5) -> None:
    """``got`` and ``want`` (rows sorted by id) hold the same rows."""
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for g, w in zip(got, want, strict=True):
        for key, value in w.items():
            if isinstance(value, list):
                np.testing.assert_allclose(g[key], value, atol=atol, err_msg=key)
            else:
                assert g[key] == value, (w["path"], key)
