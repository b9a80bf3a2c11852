"""Users' image files: every common kind reads, with a note for each conversion; a
folder, an empty, truncated, fake or bomb file is one clear line."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error
from PIL import Image

from netviz.cli import cli
from netviz.data import load_image
from netviz.registry import get_spec

RGB_SPEC = replace(get_spec("allconv"), input_shape=(3, 8, 8), mean=(0.2, 0.4, 0.6))
GREY_SPEC = replace(get_spec("mnist"), input_shape=(1, 8, 8))


def png(path: Path, rows: np.ndarray, colour_type: int, bit_depth: int, width: int, height: int) -> Path:
    """A PNG written byte by byte (Pillow cannot write 16-bit RGB, nor a lying header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def pixels(path: Path, spec=RGB_SPEC) -> tuple[np.ndarray, str]:
    tensor, note = load_image(path, spec)
    return tensor[0].permute(1, 2, 0).numpy(), note or ""


def test_eight_and_sixteen_bit_grey_and_rgb(tmp_path: Path) -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    out, note = pixels(tmp_path / "grey8.png", GREY_SPEC)
    assert np.array_equal(out[..., 0], grey) and note == ""
    grey16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024 + 1023)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    out, note = pixels(tmp_path / "grey16.png", GREY_SPEC)
    assert np.array_equal(out[..., 0], np.round(grey16 / 65535 * 255).astype(np.uint8))
    assert "16-bit pixels reduced to 8 bits" in note
    rgb16 = np.random.default_rng(0).integers(0, 65536, (8, 8, 3)).astype(">u2")
    png(tmp_path / "rgb16.png", rgb16, colour_type=2, bit_depth=16, width=8, height=8)
    out, _ = pixels(tmp_path / "rgb16.png")
    assert np.abs(out.astype(int) - rgb16.astype(int) // 257).max() <= 1  # the top byte, as Pillow reads it
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(pixels(tmp_path / "rgb.png")[0], rgb)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    assert np.array_equal(pixels(tmp_path / "rgb.jpg")[0], np.asarray(Image.open(tmp_path / "rgb.jpg")))


def test_float_tiff_is_scaled_from_its_own_range_not_read_as_black(tmp_path: Path) -> None:
    values = np.linspace(-2.0, 6.0, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "depth.tif")
    out, note = pixels(tmp_path / "depth.tif", GREY_SPEC)
    assert out.min() == 0 and out.max() == 255 and np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)
    assert "32-bit float pixels scaled from their own range -2..6" in note
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "unit.tif")
    out, note = pixels(tmp_path / "unit.tif", GREY_SPEC)
    assert np.all(out == 128) and "in [0, 1]" in note


def test_rgba_palette_cmyk_and_animated(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:4, :, 3] = 255  # top half opaque, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out, note = pixels(tmp_path / "rgba.png")
    assert np.all(out[:4] == 200)
    assert np.array_equal(out[4:].reshape(-1, 3)[0], np.round(np.array(RGB_SPEC.mean) * 255))
    assert "composited on the model's mean colour (0.20, 0.40, 0.60)" in note
    colours = np.random.default_rng(2).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    Image.fromarray(colours).quantize(16).save(tmp_path / "palette.png")
    out, _ = pixels(tmp_path / "palette.png")
    assert np.array_equal(out, np.asarray(Image.open(tmp_path / "palette.png").convert("RGB")))
    Image.fromarray(colours).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    out, note = pixels(tmp_path / "cmyk.jpg")
    assert "converted from CMYK to RGB" in note
    assert np.array_equal(out, np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB")))
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (30, 220, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    out, note = pixels(tmp_path / "anim.gif", GREY_SPEC)
    assert np.all(out == 30) and "it has 3 frames: using the first" in note


def truncated(path: Path) -> Path:
    """A real PNG cut off after 300 bytes (a download that stopped)."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    Image.fromarray(noise).save(path, format="PNG")
    path.write_bytes(path.read_bytes()[:300])
    return path


def bomb(path: Path) -> Path:
    """A PNG whose header says 40000 x 40000 pixels (1.6 billion): only the header is real."""
    return png(path, np.zeros((1, 1), np.uint8), colour_type=0, bit_depth=8, width=40000, height=40000)


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text(path: Path) -> Path:
    path.write_text("just some notes, renamed .png\n")
    return path


def missing(path: Path) -> Path:
    return path


@pytest.mark.parametrize(("make", "message"), [
    (folder, "is a folder, not an image"),
    (empty, "is empty (0 bytes)"),
    (text, "is not an image file netviz can read"),
    (truncated, "is truncated or corrupt"),
    (bomb, "too large to be an image netviz opens (a decompression bomb?)"),
    (missing, "does not exist"),
])
def test_bad_image_files_are_one_line(tmp_path: Path, make, message) -> None:
    path = make(tmp_path / "input.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["activations", "--model", "allconv", "--image", str(path),
                                      "--out", str(out)])
    assert_one_line_error(result, message)
    assert not out.exists()


def test_every_kind_through_the_cli(tmp_path: Path) -> None:
    Image.fromarray(np.full((16, 24, 4), 120, np.uint8)).save(tmp_path / "rgba.png")
    result = CliRunner().invoke(cli, ["activations", "--model", "mnist", "--image", str(tmp_path / "rgba.png"),
                                      "--layers", "fc2", "--out", str(tmp_path / "o"), "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert ("converted to 1 channel(s); resized from 16x24 to 28x28 (height x width), stretched: its "
            "width/height 1.50 became 1.00") in result.stderr
