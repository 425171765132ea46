"""Read product images safely: bounded size, bounded pixels, any mode to RGB.

A bad image never raises out of here: callers get an error code instead, so a
batch with one broken file still lands.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

# Error codes written to the embeddings table's `embedding_error` column.
IMAGE_PATH_NULL = "IMAGE_PATH_NULL"
IMAGE_UNSUPPORTED_URI = "IMAGE_UNSUPPORTED_URI"
IMAGE_MISSING = "IMAGE_MISSING"
IMAGE_UNREADABLE = "IMAGE_UNREADABLE"
IMAGE_EMPTY = "IMAGE_EMPTY"
IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
IMAGE_TOO_MANY_PIXELS = "IMAGE_TOO_MANY_PIXELS"
IMAGE_UNDECODABLE = "IMAGE_UNDECODABLE"
IMAGE_PATH_NOT_ALLOWED = "IMAGE_PATH_NOT_ALLOWED"

ERROR_HASH_PREFIX = "error:"


@dataclass(frozen=True)
class ImageLimits:
    """Bounds applied before and while decoding, and the folders images may be read from.

    ``allowed_roots``: a resolved path must lie under one of them (symbolic links and ``..``
    resolved first), else ``IMAGE_PATH_NOT_ALLOWED`` and the file is never opened. Empty: no
    restriction (only for callers that read no catalog paths, such as uploads).
    """

    max_bytes: int
    max_pixels: int
    base_dir: str | None = None
    allowed_roots: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config) -> ImageLimits:
        """The limits of ``config.images`` (a :class:`conf.Config`); roots default to the catalog's folder."""
        images = config.images
        roots = images.allowed_roots if images.allowed_roots is not None else [config.catalog_source_dir]
        return cls(images.max_bytes, images.max_pixels, images.base_dir, tuple(roots))

    def allowed(self, path: str) -> str:
        """``path`` with links and ``..`` resolved, when it lies under an allowed root; else IMAGE_PATH_NOT_ALLOWED."""
        if not self.allowed_roots:
            return path
        real = os.path.realpath(path)
        for root in self.allowed_roots:
            base = os.path.realpath(root)
            if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
                return real
        raise ImageError(IMAGE_PATH_NOT_ALLOWED, "the image path is outside images.allowed_roots")

    def relative(self, image_path: str | None) -> str | None:
        """The image path relative to the allowed root holding it (what clients may see), else None."""
        try:
            real = self.allowed(resolve_path(image_path, self.base_dir))
        except ImageError:
            return None
        for root in self.allowed_roots:
            base = os.path.realpath(root)
            if real.startswith(base.rstrip(os.sep) + os.sep):
                return os.path.relpath(real, base)
        return None


class ImageError(Exception):
    """An image could not be used; ``code`` is one of the module's error codes."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code


def resolve_path(image_path: str | None, base_dir: str | None = None) -> str:
    """Map a stored image reference to a local filesystem path.

    Accepts plain paths, ``file:`` URIs, ``dbfs:/x`` (read through the /dbfs FUSE
    mount), ``/dbfs/...`` and ``/Volumes/...``; relative paths resolve against
    ``base_dir``. Anything else (http, s3, ...) raises IMAGE_UNSUPPORTED_URI.
    """
    if image_path is None or not str(image_path).strip():
        raise ImageError(IMAGE_PATH_NULL, "product has no image_path")
    ref = str(image_path).strip()
    if ref.startswith("file:"):
        parsed = urlparse(ref)
        if parsed.netloc not in ("", "localhost"):
            raise ImageError(IMAGE_UNSUPPORTED_URI, f"remote file URI {ref!r}")
        return unquote(parsed.path)
    if ref.startswith("dbfs:"):
        return "/dbfs/" + ref[len("dbfs:"):].lstrip("/")
    if len(ref) > 2 and ref[1:3] != ":\\" and "://" in ref:
        raise ImageError(IMAGE_UNSUPPORTED_URI, f"cannot read {ref!r}: only local, file:, dbfs: and /Volumes paths")
    if not os.path.isabs(ref) and base_dir:
        return os.path.join(base_dir, ref)
    return ref


def read_image_bytes(image_path: str | None, limits: ImageLimits) -> bytes:
    """Read an image file's bytes, refusing paths outside the allowed roots, missing, empty and oversized files."""
    path = limits.allowed(resolve_path(image_path, limits.base_dir))
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ImageError(IMAGE_MISSING, f"{path} does not exist") from None
    except OSError as exc:
        raise ImageError(IMAGE_UNREADABLE, f"{path}: {exc}") from None
    if size == 0:
        raise ImageError(IMAGE_EMPTY, f"{path} is empty")
    if size > limits.max_bytes:
        raise ImageError(IMAGE_TOO_LARGE, f"{path} has {size} bytes > {limits.max_bytes}")
    try:
        with open(path, "rb") as fh:
            return fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ImageError(IMAGE_UNREADABLE, f"{path}: {exc}") from None


def image_content_hash(image_path: str | None, limits: ImageLimits) -> str:
    """sha256 of the image bytes, or ``error:<CODE>`` when they cannot be read.

    The stream compares this with the stored hash to decide whether the image
    vector must be recomputed.
    """
    try:
        return hashlib.sha256(read_image_bytes(image_path, limits)).hexdigest()
    except ImageError as exc:
        return ERROR_HASH_PREFIX + exc.code


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (CMYK, alpha, palette, 16-bit, float) to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def decode_image(data: bytes, limits: ImageLimits, name: str = "image") -> Image.Image:
    """Decode bytes into an RGB image, checking the pixel count before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > limits.max_pixels:
                raise ImageError(
                    IMAGE_TOO_MANY_PIXELS, f"{name} is {width}x{height} > {limits.max_pixels} pixels"
                )
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(IMAGE_TOO_MANY_PIXELS, f"{name}: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(IMAGE_UNDECODABLE, f"{name}: {exc}") from None
    return _to_rgb(img)


def load_image(image_path: str | None, limits: ImageLimits) -> Image.Image:
    """Read and decode one image to RGB; raises :class:`ImageError` with a code."""
    return decode_image(read_image_bytes(image_path, limits), limits, name=str(image_path))
