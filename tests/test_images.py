"""`load_image`: every kind of input a user may upload becomes upright 8-bit RGB, or a clear ImageError."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.images import MAX_PIXELS, ImageError, load_image

EXAMPLES = Path(__file__).resolve().parents[1] / "agegender" / "examples"


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    """The image encoded in memory."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height (a decompression bomb's header)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then length and type of the IHDR chunk
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def half_red(size=(60, 40)) -> Image.Image:
    """An image whose left half is red and right half blue (to check orientation)."""
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:, : size[0] // 2] = (255, 0, 0)
    arr[:, size[0] // 2:] = (0, 0, 255)
    return Image.fromarray(arr)


# ----- accepted inputs ---------------------------------------------------------------------------
def test_path_bytes_pil_and_array_give_the_same_rgb_image():
    path = EXAMPLES / "astronaut.jpg"
    from_path = load_image(path)
    assert from_path.mode == "RGB" and from_path.size == (512, 512)
    for src in (str(path), path.read_bytes(), bytearray(path.read_bytes()), Image.open(path), np.asarray(from_path)):
        assert np.array_equal(np.asarray(load_image(src)), np.asarray(from_path))


def test_an_rgb_pil_image_is_used_as_is_and_others_are_not_modified():
    rgb = Image.new("RGB", (8, 8), (1, 2, 3))
    assert load_image(rgb) is rgb
    grey = Image.new("L", (8, 8), 77)
    out = load_image(grey)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (77, 77, 77) and grey.mode == "L"


@pytest.mark.parametrize("array, expected", [
    (np.full((4, 5), 200, np.uint8), (200, 200, 200)),  # greyscale
    (np.full((4, 5, 1), 7, np.uint8), (7, 7, 7)),
    (np.full((4, 5), 65535, np.uint16), (255, 255, 255)),  # 16-bit scaled
    (np.full((4, 5, 3), 0.5, np.float32), (128, 128, 128)),  # float in [0, 1]
    (np.dstack([np.full((4, 5, 3), 0, np.uint8), np.zeros((4, 5), np.uint8)]), (255, 255, 255)),  # transparent
    (np.ones((4, 5), bool), (255, 255, 255)),
])
def test_arrays_are_converted(array, expected):
    out = load_image(array)
    assert out.mode == "RGB" and out.size == (5, 4) and out.getpixel((0, 0)) == expected


@pytest.mark.parametrize("array", [np.zeros((4, 5, 2), np.uint8), np.zeros((4,), np.uint8),
                                   np.zeros((4, 5, 3), np.int64), np.full((4, 5, 3), 2.0),
                                   np.zeros((0, 5, 3), np.uint8)])
def test_unusable_arrays_are_refused(array):
    with pytest.raises(ImageError):
        load_image(array)


# ----- bad files ---------------------------------------------------------------------------------
def test_empty_file_and_empty_bytes(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_not_an_image(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n" * 20)
    with pytest.raises(ImageError, match="not an image"):
        load_image(text)
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"%PDF-1.4 not an image either")


def test_missing_path_directory_and_wrong_type(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        load_image(42)


def test_truncated_jpeg():
    data = (EXAMPLES / "astronaut.jpg").read_bytes()
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_corrupt_png():
    data = bytearray(encode(half_red(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10: idat + 30] = bytes(20)  # damage the compressed pixels (the CRC no longer matches)
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(bytes(data))


def test_corrupt_jpeg_header():
    data = bytearray((EXAMPLES / "astronaut.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")  # the start-of-frame segment: claim 0 components
    data[sof + 9] = 0
    with pytest.raises(ImageError):
        load_image(bytes(data))


@pytest.mark.parametrize("width, height", [(10_000, 10_000), (60_000, 60_000)])
def test_decompression_bomb_is_refused_from_its_header(width, height):
    # The file holds 1 pixel of data: a refusal that names the size proves nothing was decoded.
    with pytest.raises(ImageError, match="megapixels"):
        load_image(png_with_size(width, height))


def test_pixel_limit_is_documented_and_adjustable():
    assert 20_000_000 < MAX_PIXELS <= Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="over the limit"):
        load_image(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5_000)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(np.zeros((100, 100, 3), np.uint8), max_pixels=5_000)


def test_huge_legitimate_photo_loads_at_full_size():
    photo = Image.new("RGB", (6000, 4000), (10, 20, 30))
    out = load_image(encode(photo, "JPEG", quality=50))
    assert out.size == (6000, 4000) and out.mode == "RGB"


# ----- conversions -------------------------------------------------------------------------------
def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    red, _, blue = load_image(data).getpixel((8, 8))
    assert red > 200 and blue < 50


def test_16_bit_png_is_scaled_to_8_bits():
    ramp = np.linspace(0, 65535, 256).astype(np.uint16).reshape(16, 16)
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = np.asarray(load_image(data))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and abs(int(out[8, 0, 0]) - 128) <= 2
    assert (out[..., 0] == out[..., 1]).all()
    dark = encode(Image.fromarray(np.full((4, 4), 200, np.uint16)), "PNG")  # 16-bit, all values under 256
    assert load_image(dark).getpixel((0, 0)) == (1, 1, 1)


@pytest.mark.parametrize("mode, colour, expected", [
    ("L", 90, (90, 90, 90)),
    ("LA", (90, 255), (90, 90, 90)),
    ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
    ("RGBA", (10, 20, 30, 0), (255, 255, 255)),  # fully transparent -> white
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),  # pure red in CMYK
    ("1", 1, (255, 255, 255)),
])
def test_modes_are_converted_to_rgb(mode, colour, expected):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = load_image(encode(Image.new(mode, (8, 8), colour), fmt, **({"quality": 100} if fmt == "JPEG" else {})))
    assert out.mode == "RGB"
    assert np.abs(np.array(out.getpixel((4, 4))) - expected).max() <= 3


def test_palette_images_with_and_without_transparency():
    pal = half_red().convert("P", palette=Image.ADAPTIVE, colors=4)
    out = load_image(encode(pal, "PNG"))
    assert out.getpixel((5, 5)) == (255, 0, 0) and out.getpixel((55, 5)) == (0, 0, 255)
    pal.info["transparency"] = pal.getpixel((55, 5))  # the blue entry becomes transparent
    out = load_image(encode(pal, "PNG", transparency=pal.info["transparency"]))
    assert out.getpixel((5, 5)) == (255, 0, 0) and out.getpixel((55, 5)) == (255, 255, 255)


@pytest.mark.parametrize("orientation, size, top_left", [
    (1, (60, 40), (255, 0, 0)),
    (3, (60, 40), (0, 0, 255)),  # rotated 180: blue on the left
    (6, (40, 60), (255, 0, 0)),  # rotate 90 clockwise to display: the red half goes on top
    (8, (40, 60), (0, 0, 255)),  # rotate 90 counter-clockwise: the blue half goes on top
])
def test_exif_orientation_is_applied(orientation, size, top_left):
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(encode(half_red(), "JPEG", quality=100, exif=exif.tobytes()))
    assert out.size == size
    assert np.abs(np.array(out.getpixel((2, 2))) - top_left).max() <= 10


def test_tiny_image_loads():
    assert load_image(encode(Image.new("RGB", (1, 1), (5, 6, 7)), "PNG")).size == (1, 1)
