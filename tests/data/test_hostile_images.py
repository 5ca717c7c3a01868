"""Image folders with decompression bombs (headers claiming 100 M or 400 M pixels) and names
holding a newline: a named bad image (exit 3, one line, the name quoted) or skipped with
--skip-bad-images, in memory and streamed alike; nothing is decoded past the header."""

import struct
import zlib

import pytest
from PIL import Image

from dimctl.data.registry import load_dataset
from tests.cli.helpers import assert_one_line_error, run_here

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns, then dimctl refuses


def png_claiming(width: int, height: int) -> bytes:
    """A grey PNG whose header claims width × height pixels, with one tiny compressed row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    data = load_dataset("digits")
    for i in range(64):
        Image.fromarray(data.train_images[i, 0].numpy()).save(root / f"{i:03d}.png")
    return root


@pytest.mark.parametrize("pixels", [(10_000, 10_000), (20_000, 20_000)], ids=["100M-warning", "400M-error"])
@pytest.mark.parametrize("stream", [False, True], ids=["memory", "stream"])
def test_a_decompression_bomb_is_a_named_bad_image_or_skipped(images, tmp_path, pixels, stream):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "000-bomb.png").write_bytes(png_claiming(*pixels))
    flags = ["pretrain", "--dataset", "folder", "--data-root", folder, "--mi-units", "8", "--width", "0.25",
             "--fc-dim", "16", "--epochs", "1", "--batch-size", "16", "--checkpoint-every", "0",
             *(["--stream", "--workers", "1"] if stream else [])]
    result = run_here(*flags, "--out", tmp_path / "r1")
    assert_one_line_error(result, 3)
    assert "000-bomb.png" in result.stderr.decode() and "--skip-bad-images" in result.stderr.decode()
    skipped = run_here(*flags, "--skip-bad-images", "--out", tmp_path / "r2")
    assert skipped.returncode == 0, skipped.stderr.decode()


def test_a_name_with_a_newline_stays_one_quoted_line(images, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in list(images.iterdir())[:20]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "bad\nname.png").write_bytes(b"not a png")
    result = run_here("pretrain", "--dataset", "folder", "--data-root", folder, "--epochs", "0", "--out", tmp_path / "r")
    assert_one_line_error(result, 3)
    assert "bad\\nname.png" in result.stderr.decode()
