"""Unit tests: bounded image reading, path forms and mode conversion."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fashion_catalog.encoders import images
from fashion_catalog.encoders.images import ImageError, ImageLimits, image_content_hash, load_image, resolve_path

LIMITS = ImageLimits(max_bytes=5_000_000, max_pixels=4_000_000)


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _save(path, img, fmt="PNG", **kw):
    img.save(path, fmt, **kw)
    return str(path)


@pytest.mark.parametrize(
    "mode,maker",
    [
        ("CMYK", lambda: Image.new("CMYK", (20, 10), (0, 255, 255, 0))),
        ("RGBA", lambda: Image.new("RGBA", (20, 10), (255, 0, 0, 0))),
        ("P", lambda: Image.new("RGB", (20, 10), (0, 0, 255)).convert("P")),
        ("I;16", lambda: Image.fromarray(np.arange(200, dtype=np.uint16).reshape(10, 20) * 300)),
        ("L", lambda: Image.new("L", (20, 10), 128)),
        ("1", lambda: Image.new("1", (20, 10), 1)),
    ],
)
def test_any_mode_becomes_rgb(tmp_path, mode, maker):
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    path = _save(tmp_path / f"img.{fmt.lower()}", maker(), fmt)
    img = load_image(path, LIMITS)
    assert img.mode == "RGB" and img.size == (20, 10)


def test_transparent_pixels_are_composited_on_white(tmp_path):
    path = _save(tmp_path / "a.png", Image.new("RGBA", (4, 4), (255, 0, 0, 0)))
    assert load_image(path, LIMITS).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_range_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "x.tiff", Image.fromarray(arr), "TIFF")
    img = load_image(path, LIMITS)
    assert img.getpixel((0, 0)) == (0, 0, 0) and img.getpixel((1, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    "setup,code",
    [
        (lambda d: str(d / "nope.jpg"), images.IMAGE_MISSING),
        (lambda d: _write(d / "empty.jpg", b""), images.IMAGE_EMPTY),
        (lambda d: _write(d / "text.jpg", b"not an image at all"), images.IMAGE_UNDECODABLE),
        (lambda d: None, images.IMAGE_PATH_NULL),
        (lambda d: "https://example.com/x.jpg", images.IMAGE_UNSUPPORTED_URI),
        (lambda d: "s3://bucket/x.jpg", images.IMAGE_UNSUPPORTED_URI),
    ],
)
def test_bad_inputs_give_error_codes(tmp_path, setup, code):
    with pytest.raises(ImageError) as exc:
        load_image(setup(tmp_path), LIMITS)
    assert exc.value.code == code
    # Readable-but-undecodable bytes still hash (a fix to the file changes the hash).
    if code != images.IMAGE_UNDECODABLE:
        assert image_content_hash(setup(tmp_path), LIMITS) == "error:" + code


def test_truncated_jpeg_is_undecodable(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError) as exc:
        load_image(str(path), LIMITS)
    assert exc.value.code == images.IMAGE_UNDECODABLE


def test_size_and_pixel_bounds(tmp_path):
    path = _save(tmp_path / "big.png", Image.new("RGB", (300, 300)))
    with pytest.raises(ImageError) as exc:
        load_image(path, ImageLimits(max_bytes=100, max_pixels=10**9))
    assert exc.value.code == images.IMAGE_TOO_LARGE
    with pytest.raises(ImageError) as exc:
        load_image(path, ImageLimits(max_bytes=10**9, max_pixels=300 * 299))
    assert exc.value.code == images.IMAGE_TOO_MANY_PIXELS


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    # A small file that claims a huge canvas: refused from its header alone.
    path = _save(tmp_path / "bomb.png", Image.new("1", (12000, 12000)))
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(ImageError) as exc:
        load_image(path, LIMITS)
    assert exc.value.code == images.IMAGE_TOO_MANY_PIXELS


def test_path_forms(tmp_path):
    assert resolve_path("file:///data/x.jpg") == "/data/x.jpg"
    assert resolve_path("file:/data/my%20x.jpg") == "/data/my x.jpg"
    assert resolve_path("dbfs:/mnt/img/x.jpg") == "/dbfs/mnt/img/x.jpg"
    assert resolve_path("/dbfs/mnt/img/x.jpg") == "/dbfs/mnt/img/x.jpg"
    assert resolve_path("/Volumes/main/fashion/images/x.jpg") == "/Volumes/main/fashion/images/x.jpg"
    assert resolve_path("images/x.jpg", base_dir="/cat") == "/cat/images/x.jpg"
    path = _save(tmp_path / "ok.png", Image.new("RGB", (3, 3)))
    assert load_image("file://" + path, LIMITS).size == (3, 3)


def test_content_hash_follows_bytes_not_path(tmp_path):
    a = _save(tmp_path / "a.png", Image.new("RGB", (3, 3), (1, 2, 3)))
    b = _save(tmp_path / "b.png", Image.new("RGB", (3, 3), (1, 2, 3)))
    assert image_content_hash(a, LIMITS) == image_content_hash(b, LIMITS)
    _save(tmp_path / "b.png", Image.new("RGB", (3, 3), (9, 9, 9)))
    assert image_content_hash(a, LIMITS) != image_content_hash(b, LIMITS)
