"""Product photos for the service: read locally, or from Unity Catalog Volumes through the Files API."""

from __future__ import annotations

from fashion_catalog.encoders.images import IMAGE_TOO_LARGE, IMAGE_UNREADABLE, ImageError, ImageLimits, read_image_bytes


class ImageReader:
    """Bytes of a product's image, with the configured size bound.

    ``/Volumes/...`` paths go through the Files API when a :class:`indexes.workspace.VolumeFiles`
    is given (a Databricks App has no /Volumes mount); anything else is read as a local path.
    """

    def __init__(self, limits: ImageLimits, volumes=None):
        self.limits = limits
        self.volumes = volumes

    def read(self, image_path: str | None) -> bytes:
        if self.volumes is not None and image_path and str(image_path).startswith("/Volumes/"):
            path = self.limits.allowed(str(image_path))  # IMAGE_PATH_NOT_ALLOWED before any request
            try:
                return self.volumes.read(path, self.limits.max_bytes)
            except ValueError as exc:
                raise ImageError(IMAGE_TOO_LARGE, str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - a missing or forbidden file is an unreadable image
                raise ImageError(IMAGE_UNREADABLE, f"{image_path}: {exc.__class__.__name__}") from None
        return read_image_bytes(image_path, self.limits)
