"""The client's pixel budget (issue 21, item 4): an image whose header claims more pixels than MAX_PIXELS is
refused with one line BEFORE anything decodes it (a decompression bomb: a few hundred bytes that claim
20000 x 20000 pixels). Real files: a small JPEG/PNG whose header is rewritten to claim a huge size."""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO
from yolo_triton import client as yc
from yolo_triton.settings import defaults


def bomb_jpeg(width: int, height: int) -> bytes:
    """A 16x16 grey JPEG whose SOF0 claims ``width`` x ``height`` (the scan data stays 16x16's)."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (CRC fixed; the image data is a few bytes)."""
    data = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_default_budget_is_the_documented_setting():
    assert int(defaults()["MAX_PIXELS"]) == 100_000_000
    assert f"MAX_PIXELS ?= {defaults()['MAX_PIXELS']}" in (REPO / "export" / "defaults.mk").read_text()


@pytest.mark.parametrize("make, suffix", [(bomb_jpeg, ".jpg"), (bomb_png, ".png")])
def test_a_bomb_is_refused_before_anything_decodes_it(tmp_path, monkeypatch, make, suffix):
    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(make(20000, 20000))
    assert path.stat().st_size < 1000
    monkeypatch.setattr(cv2, "imread", lambda *a, **k: pytest.fail("cv2.imread called on a bomb"))
    with pytest.raises(yc.ClientError) as raised:
        yc.read_image(path)
    message = str(raised.value)
    assert "400.0 MP is over the pixel budget of 100 MP" in message and "\n" not in message
    assert "MAX_PIXELS" in message


def test_pillow_ceiling_counts_as_over_budget(tmp_path):
    """Above 2 x Image.MAX_IMAGE_PIXELS Pillow raises itself: still one line, still refused."""
    path = tmp_path / "huge.jpg"
    path.write_bytes(bomb_jpeg(65000, 65000))
    with pytest.raises(yc.ClientError, match="4225.0 MP is over the pixel budget of 100 MP"):
        yc.read_image(path)
    with pytest.raises(yc.ClientError, match="cannot decode .*OpenCV refused it"):  # a budget past OpenCV's own
        yc.read_image(path, max_pixels=10**10)
    path.write_bytes(bomb_jpeg(12000, 12000))  # 144 MP: under Pillow's ceiling, the header's own size
    with pytest.raises(yc.ClientError, match="12000x12000 = 144.0 MP is over the pixel budget of 100 MP"):
        yc.read_image(path)


def test_budget_is_a_setting_and_genuine_images_pass(tmp_path):
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), np.full((300, 400, 3), 90, np.uint8))
    assert yc.read_image(path).shape == (300, 400, 3)
    assert yc.read_image(path, max_pixels=120_000).shape == (300, 400, 3)  # exactly at the budget
    with pytest.raises(yc.ClientError, match=r"400x300 = 0.1 MP is over the pixel budget of 0.119999 MP"):
        yc.read_image(path, max_pixels=119_999)


def test_encoded_bytes_are_checked_too():
    yc.check_pixel_budget(bomb_jpeg(100, 100))
    with pytest.raises(yc.ClientError, match=r"^\d+ bytes: 400.0 MP is over"):
        yc.check_pixel_budget(bomb_jpeg(20000, 20000))


def test_a_header_pillow_cannot_read_is_left_to_opencv(tmp_path):
    path = tmp_path / "not_an_image.jpg"
    path.write_bytes(b"not an image at all")
    yc.check_pixel_budget(path)  # nothing to say about its size
    with pytest.raises(yc.ClientError, match="cannot decode"):
        yc.read_image(path)


def test_cli_refuses_with_one_line_before_connecting(tmp_path):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bomb_jpeg(20000, 20000))
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "triton_client.py"), "--model", "m",
                           "--url", "127.0.0.1:1", "--images", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "over the pixel budget" in lines[0], done.stderr
    assert "cannot reach" not in done.stderr  # refused before any connection
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.full((300, 400, 3), 90, np.uint8))
    cli = [sys.executable, str(REPO / "scripts" / "triton_client.py"), "--model", "m", "--url", "127.0.0.1:1",
           "--images", str(photo)]
    lower = subprocess.run([*cli, "--max-pixels", "100000"], capture_output=True, text=True, timeout=120)
    assert lower.returncode == 1 and "over the pixel budget of 0.1 MP" in lower.stderr, lower.stderr
    # default pixel budget: on to the (absent) server; a short retry budget, not the 60 s a restart may take
    passed = subprocess.run([*cli, "--retry-budget", "1"], capture_output=True, text=True, timeout=120)
    assert "over the pixel budget" not in passed.stderr and "cannot reach" in passed.stderr, passed.stderr
