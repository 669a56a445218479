"""Image data shared by ingest, prepare and serving: IDX files, class folders, decoding and normalisation.

One decoder and one normalisation serve training and serving, so the server applies exactly what prepare
wrote into meta.json's `preprocessing`. Only numpy and Pillow here: the server imports this without torch.
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path
from typing import Any

import numpy as np

from components.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")
MAX_PIXELS = 4096 * 4096  # larger uploads are refused before decoding (decompression bombs)
IDX_GLOB = "*-images-idx3-ubyte*"


class ImageError(DataError):
    """An image cannot be used: not PNG/JPEG (HTTP 415), too large (413), truncated or the wrong number of
    channels (400). `status` is what the server answers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (uint8), gzip-compressed or not, shaped by its header."""
    raw = (gzip.open if str(path).endswith(".gz") else open)(path, "rb").read()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic >> 8 != 0x08:
        raise DataError(f"{path}: not an IDX file of uint8 (magic {magic:#010x})")
    dims = struct.unpack(">" + "I" * (magic & 0xFF), raw[4 : 4 + 4 * (magic & 0xFF)])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def idx_bytes(array: np.ndarray) -> bytes:
    """Uncompressed IDX encoding of a uint8 array (byte-identical on every machine)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def is_image_dataset(folder: Path) -> bool:
    """Raw image data is IDX files or class sub-folders; tabular data is a data.csv."""
    folder = Path(folder)
    return not (folder / "data.csv").is_file() and (any(folder.glob(IDX_GLOB)) or any(folder.iterdir()))


def load_raw(folder: Path, size: int | None, grayscale: bool | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 [N, C, H, W], labels int64 [N], class names) from IDX files or class sub-folders.

    IDX parts (e.g. train + t10k) are concatenated in name order; class folders are sorted by name and
    decoded with the same rules the server applies to uploads.
    """
    folder = Path(folder)
    classes_file = folder / "classes.txt"
    idx_parts = sorted(folder.glob(IDX_GLOB))
    if idx_parts:
        images = np.concatenate([read_idx(p) for p in idx_parts])  # (N, H, W)
        labels = np.concatenate([read_idx(_labels_for(p)) for p in idx_parts]).astype(np.int64)
        classes = classes_file.read_text().splitlines() if classes_file.is_file() else None
        classes = classes or [str(k) for k in range(int(labels.max()) + 1)]
        x = images[:, None]  # (N, 1, H, W)
        if size is not None and size != x.shape[-1]:
            x = np.stack([to_array(_pil(img[0]), size, True) for img in x])
        return x, labels, classes
    return _load_folders(folder, size, grayscale)


def _labels_for(images: Path) -> Path:
    return images.with_name(images.name.replace("-images-idx3-", "-labels-idx1-"))


def _load_folders(folder: Path, size: int | None, grayscale: bool | None) -> tuple[np.ndarray, np.ndarray, list]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(f, k) for k, c in enumerate(classes) for f in sorted((folder / c).iterdir()) if f.is_file()]
    files = [(f, k) for f, k in files if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or not files:
        raise DataError(f"{folder}: expected one sub-folder of PNG/JPEG images per class (at least 2 classes)")
    if size is None:
        raise DataError(f"{folder}: image folders need prepare.image_size (images may differ in size)")
    first = decode(files[0][0].read_bytes())
    gray = grayscale if grayscale is not None else first.mode in ("L", "LA", "I", "1")
    try:
        x = np.stack([to_array(decode(f.read_bytes()), size, gray) for f, _ in files])
    except ImageError as err:
        raise DataError(f"{folder}: {err}") from None
    return x, np.array([k for _, k in files], dtype=np.int64), classes


def _pil(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(array)


def decode(data: bytes) -> Any:
    """A fully loaded PIL image from PNG/JPEG bytes; ImageError names what is wrong with anything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not a PNG or JPEG image (cannot identify the file)", status=415) from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"image too large: {err}", status=413) from None
    if image.format not in FORMATS:
        raise ImageError(f"unsupported image format {image.format}; send PNG or JPEG", status=415)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image of {width}x{height} pixels is too large (limit {MAX_PIXELS} pixels)", status=413)
    try:
        image.load()
    except (OSError, SyntaxError) as err:
        raise ImageError(f"truncated or corrupt {image.format} image: {err}") from None
    return image


def to_array(image: Any, size: int | None, grayscale: bool) -> np.ndarray:
    """uint8 [C, H, W]: alpha dropped, converted to L (grayscale) or RGB, resized to size x size (bilinear)."""
    from PIL import Image

    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        raise ImageError(f"unsupported colour mode {image.mode}; send grayscale or RGB")
    if image.mode.startswith("I"):
        raise ImageError(f"{image.mode} images (16/32-bit) are not supported; send 8-bit grayscale or RGB")
    if not grayscale and image.mode in ("1", "L", "LA"):
        raise ImageError("the model expects 3 channels (RGB), got a 1-channel grayscale image")
    image = image.convert("L" if grayscale else "RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def normalise(x: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """uint8 (or 0..255 float) pixels [N, C, H, W] -> float32 (x / 255 - mean) / std, per channel."""
    mean = np.asarray(preprocessing["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(preprocessing["std"], np.float32).reshape(1, -1, 1, 1)
    return ((x.astype(np.float32) / np.float32(255.0)) - mean) / std
