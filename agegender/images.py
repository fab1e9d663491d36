"""Safe image loading: any photo a user throws at us becomes an upright 8-bit RGB PIL image, or a clear error.

`load_image` accepts a path, bytes, a PIL image or a numpy array and documents each conversion:

- the pixel count is checked against `MAX_PIXELS` from the file header, before any decoding, so a
  decompression bomb (a small file that decodes to gigabytes) is refused cheaply;
- the EXIF orientation tag is applied, so phone photos come out upright;
- animations (GIF, APNG, WebP) give their first frame;
- 16-bit images are scaled to 8 bits (value / 257), grayscale and palette images are expanded to
  RGB, CMYK is converted to RGB, and transparent areas become white;
- an empty file, a file that is not an image, or a corrupt or truncated one raises `ImageError`.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse images with more pixels than this (checked from the header, before decoding): about
# 80 megapixels, above a 64-megapixel phone photo (9248x6936) and below Pillow's own
# decompression-bomb warning (89 megapixels). Decoded, such an image takes 240 MB as RGB.
MAX_PIXELS = 80_000_000
ORIENTATION = 0x0112  # the EXIF orientation tag

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


class ImageError(ValueError):
    """An input that is not a usable image; the message says what is wrong in one line."""


def _check_size(width: int, height: int, max_pixels: int, what: str) -> None:
    """Refuse empty images and images over the pixel limit."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{what} is empty ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageError(f"{what} is {width}x{height} = {width * height / 1e6:.0f} megapixels, "
                         f"over the limit of {max_pixels / 1e6:.0f} megapixels; downscale it first")


def _to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of a PIL image of any mode (16-bit scaled, alpha over white)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit data is scaled to 8 bits; 32-bit modes are taken as 16-bit data unless all
        # values fit in 8 bits.
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX


def _from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    """An HxW or HxWxC (C = 1, 3 or 4) array as a PIL image: uint8 as is, uint16 scaled, floats in [0, 1]."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {array.shape}")
    _check_size(array.shape[1], array.shape[0], max_pixels, "the image array")
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = np.rint(array / 257.0).astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ImageError("a float image array must hold values in [0, 1]; use uint8 for 0..255")
        array = np.rint(array * 255).astype(np.uint8)
    else:
        raise ImageError(f"unsupported image array dtype {array.dtype}; use uint8 (0..255) or float (0..1)")
    mode = "L" if array.ndim == 2 else ("RGB" if array.shape[2] == 3 else "RGBA")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(array), mode))


def _open(fp, name: str, max_pixels: int) -> Image.Image:
    """Decode an encoded image after checking its header's pixel count; the first frame, upright, RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)  # reads the header only
    except Image.DecompressionBombError as exc:  # Pillow's own check, at twice its 89-megapixel warning
        raise ImageError(f"{name} is far over the limit of {max_pixels / 1e6:.0f} megapixels; "
                         "downscale it first") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image Pillow can read (JPEG, PNG, GIF, WebP, BMP, TIFF, ...)") from exc
    with image:
        _check_size(image.width, image.height, max_pixels, name)
        try:
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # animations: the first frame
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))  # a copy, independent of the file
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            raise ImageError(f"{name} is corrupt or truncated ({exc})") from exc


def load_image(src: ImageSource | Any, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An upright 8-bit RGB PIL image from a path, bytes, a PIL image or a numpy array (see the module doc)."""
    if isinstance(src, Image.Image):
        _check_size(src.width, src.height, max_pixels, "the image")
        try:
            if src.mode == "RGB" and src.getexif().get(ORIENTATION, 1) == 1:
                return src  # nothing to convert; the pipeline never modifies the image it is given
            return _to_rgb(ImageOps.exif_transpose(src))  # a copy: the caller's image is left as it was
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"the image is corrupt or truncated ({exc})") from exc
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageError("the image data is empty (0 bytes)")
        return _open(io.BytesIO(data), "the image data", max_pixels)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if not path.is_file():
            raise ImageError(f"{path} is not a file")
        if path.stat().st_size == 0:
            raise ImageError(f"{path} is empty (0 bytes)")
        with open(path, "rb") as fp:
            return _open(fp, str(path), max_pixels)
    raise ImageError(f"cannot read an image from a {type(src).__name__}; "
                     "pass a path, bytes, a PIL image or a numpy array")
