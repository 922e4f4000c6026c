"""Video frames turned upright by their display matrix, as ``ffmpeg -autorotate`` does
(rotations and flips; phone videos are often stored sideways)."""

from __future__ import annotations

import math

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType
from PIL import Image


def display_matrix(frame: av.VideoFrame) -> tuple[int, int, int, int] | None:
    """The 2x2 part (a, b, c, d) of the frame's display matrix, in 16.16 fixed point."""
    sd = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if sd is None:
        return None
    m = np.frombuffer(bytes(sd), dtype="<i4")
    if m.size < 9:
        return None
    return int(m[0]), int(m[1]), int(m[3]), int(m[4])


def upright(arr: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """Apply ``frame``'s display matrix (rotation and flips) to its (H, W, C) pixels.

    The matrix maps a source pixel (x, y) to display position (a*x + c*y, b*x + d*y)
    (ISO/IEC 14496-12 ``tkhd`` layout, which FFmpeg keeps). For the eight axis-aligned
    cases this is a transpose plus flips; other angles (rare) are rotated by
    ``frame.rotation`` with Pillow.
    """
    m = display_matrix(frame)
    if m is None:
        return arr
    a, b, c, d = m
    if a == 0 and d == 0 and b != 0 and c != 0:  # 90 / 270 degrees, maybe mirrored
        out = arr.swapaxes(0, 1)  # out[x, y] = in[y, x]
        if b < 0:
            out = out[::-1]
        if c < 0:
            out = out[:, ::-1]
    elif b == 0 and c == 0 and a != 0 and d != 0:  # 0 / 180 degrees, maybe mirrored
        out = arr
        if a < 0:
            out = out[:, ::-1]
        if d < 0:
            out = out[::-1]
    else:
        angle = frame.rotation
        if not angle or math.isnan(angle):
            return arr
        img = Image.fromarray(np.ascontiguousarray(arr)).rotate(
            angle, resample=Image.Resampling.BICUBIC, expand=True)
        return np.asarray(img)
    return np.ascontiguousarray(out)


def rotation_of(frame: av.VideoFrame) -> int:
    """Degrees counter-clockwise that turn the frame upright (0 without a matrix)."""
    m = display_matrix(frame)
    if m is None:
        return 0
    angle = frame.rotation
    return 0 if angle is None or math.isnan(angle) else int(round(angle))


def frame_image(frame: av.VideoFrame) -> Image.Image:
    """A decoded frame as an upright RGB PIL image (``to_ndarray(format="rgb24")``)."""
    return Image.fromarray(upright(frame.to_ndarray(format="rgb24"), frame), "RGB")
