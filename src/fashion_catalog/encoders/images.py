"""Read product images safely: bounded size, bounded pixels, bounded decoding cost, any mode to RGB.

Only :class:`ImageError` ever leaves this module, with a code: a path holding a NUL byte or an
unencodable character, a malformed URI, a missing, empty, oversized or undecodable file all
become a code the stream records on the row, so a batch with one broken row still lands.
Decoding costs at most about one copy of the decoded pixels: JPEGs are drafted at a reduced
scale, large images reduced to :data:`MAX_DECODED_SIDE`, and 16-bit and float images brought to
8 bits without a float copy of the full image.
"""

from __future__ import annotations

import hashlib
import io
import math
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
IMAGE_PATH_INVALID = "IMAGE_PATH_INVALID"  # a NUL byte, an unencodable character, a malformed URI
IMAGE_UNSUPPORTED_FORMAT = "IMAGE_UNSUPPORTED_FORMAT"  # decodable, but not a format the service serves
# Anything else that went wrong with one row's image (a codec bug, memory): recorded on the row, never raised.
IMAGE_UNEXPECTED_ERROR = "IMAGE_UNEXPECTED_ERROR"

# The codes of a file that is not a usable image (the model-call codes, IMAGE_ENCODE_FAILED and IMAGE_REJECTED,
# are in udfs.encoding: the file was fine).
FILE_ERRORS = frozenset({IMAGE_PATH_NULL, IMAGE_UNSUPPORTED_URI, IMAGE_MISSING, IMAGE_UNREADABLE, IMAGE_EMPTY,
                         IMAGE_TOO_LARGE, IMAGE_TOO_MANY_PIXELS, IMAGE_UNDECODABLE, IMAGE_PATH_NOT_ALLOWED,
                         IMAGE_PATH_INVALID, IMAGE_UNSUPPORTED_FORMAT, IMAGE_UNEXPECTED_ERROR})


def file_error(embedding_error: str | None) -> str | None:
    """The file-problem code in a row's comma-joined ``embedding_error``, if any (see :data:`FILE_ERRORS`)."""
    return next((c for c in (embedding_error or "").split(",") if c in FILE_ERRORS), None)


# Images are reduced to at most this many pixels on the long side while decoding (CLIP reads 224).
MAX_DECODED_SIDE = 2048
# The formats the service takes as uploads and serves at /images (Pillow's names -> media types).
WEB_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
               "BMP": "image/bmp", "TIFF": "image/tiff"}

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
        return cls(images.max_bytes, images.max_pixels, config.image_root, tuple(roots))

    def allowed(self, path: str) -> str:
        """``path`` with links and ``..`` resolved, when it lies under an allowed root; else IMAGE_PATH_NOT_ALLOWED."""
        if not self.allowed_roots:
            return path
        real = _realpath(path)
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


def _realpath(path: str) -> str:
    """``os.path.realpath``, with a path the OS cannot take (NUL byte, unencodable text) as IMAGE_PATH_INVALID."""
    try:
        return os.path.realpath(path)
    except (ValueError, OSError) as exc:  # UnicodeEncodeError is a ValueError
        raise ImageError(IMAGE_PATH_INVALID, f"the image path cannot be a file name ({type(exc).__name__})") from None


def _checked(ref: str) -> str:
    """``ref`` when the OS could open it: no NUL byte, encodable as a file name; else IMAGE_PATH_INVALID."""
    if "\x00" in ref:
        raise ImageError(IMAGE_PATH_INVALID, "the image path holds a NUL byte")
    try:
        ref.encode("utf-8")  # strict: a lone surrogate is no text a table or a file system holds
    except UnicodeError:
        raise ImageError(IMAGE_PATH_INVALID, "the image path is not valid text for a file name") from None
    return ref


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
    ref = _checked(str(image_path).strip())
    if ref.startswith("file:"):
        try:
            parsed = urlparse(ref)
        except ValueError:
            raise ImageError(IMAGE_PATH_INVALID, "the image path is a malformed file URI") from None
        if parsed.netloc not in ("", "localhost"):
            raise ImageError(IMAGE_UNSUPPORTED_URI, f"remote file URI {ref!r}")
        return _checked(unquote(parsed.path))
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
    except ValueError:
        raise ImageError(IMAGE_PATH_INVALID, "the image path cannot be a file name") from None
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


def _stretched(values: np.ndarray, lo: float, hi: float) -> Image.Image:
    """8-bit RGB of a small array of 16-bit or float values, ``lo..hi`` stretched to 0..255."""
    values = np.nan_to_num(values.astype(np.float32), nan=lo, posinf=hi, neginf=lo)
    scaled = np.zeros_like(values) if hi <= lo else (values - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L").convert("RGB")


def _reduction(img: Image.Image) -> int:
    return max(1, math.ceil(max(img.size) / MAX_DECODED_SIDE))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode (CMYK, alpha, palette, 16-bit, float) to 8-bit RGB, at most MAX_DECODED_SIDE on a side.

    Reduced before converting, so the cost stays about one copy of the decoded pixels.
    """
    step = _reduction(img)
    if img.mode.startswith("I;16"):
        # Pillow neither reduces nor maps 16-bit pixels: one uint16 copy, strided down, then 8 bits.
        values = np.asarray(img)
        return _stretched(values[::step, ::step], float(values.min()), float(values.max()))
    if img.mode in ("I", "F"):
        lo, hi = img.getextrema()
        return _stretched(np.asarray(img.reduce(step) if step > 1 else img), float(lo), float(hi))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if step > 1 and img.mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        img = img.reduce(step)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        img = background
    img = img if img.mode == "RGB" else img.convert("RGB")
    step = _reduction(img)
    return img.reduce(step) if step > 1 else img


def decode_image(data: bytes, limits: ImageLimits, name: str = "image",
                 formats: frozenset[str] | None = None) -> Image.Image:
    """Decode bytes into an RGB image, checking the pixel count (and ``formats``, Pillow names) before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if formats is not None and img.format not in formats:
                raise ImageError(IMAGE_UNSUPPORTED_FORMAT, f"{name} is {img.format}, not one of {sorted(formats)}")
            width, height = img.size
            if width * height > limits.max_pixels:
                raise ImageError(
                    IMAGE_TOO_MANY_PIXELS, f"{name} is {width}x{height} > {limits.max_pixels} pixels"
                )
            if img.format == "JPEG" and max(width, height) > MAX_DECODED_SIDE:
                img.draft("RGB", (MAX_DECODED_SIDE, MAX_DECODED_SIDE))  # DCT scaling: decode at 1/2, 1/4 or 1/8
            img.load()
            return _to_rgb(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(IMAGE_TOO_MANY_PIXELS, f"{name}: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(IMAGE_UNDECODABLE, f"{name}: {exc}") from None


def image_format(data: bytes) -> str | None:
    """The format Pillow reads in the header of ``data`` (``JPEG``, ``PNG``...), or None when it is no image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is not an image
        return None


def load_image(image_path: str | None, limits: ImageLimits) -> Image.Image:
    """Read and decode one image to RGB; raises :class:`ImageError` with a code."""
    return decode_image(read_image_bytes(image_path, limits), limits, name=str(image_path))
