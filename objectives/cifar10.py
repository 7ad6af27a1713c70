"""CIFAR-10 from a directory: the python-pickle batches or an ImageFolder tree; crop-and-flip augmentation.

Two layouts are read (nothing is downloaded):

* the "CIFAR-10 python version" (``cifar-10-batches-py``): pickled dicts ``data_batch_1`` …
  ``data_batch_5`` and ``test_batch`` with ``data`` (uint8, ``N × 3072``, channel-major 32×32) and
  ``labels``. Training batches are read from ``data_batch_1`` up to the last consecutive one, so a
  smaller set (e.g. two batches) works the same way. Pickles are read with an unpickler that only
  builds plain containers and NumPy arrays, never arbitrary objects.
* an ImageFolder tree: ``train/<class>/*.png`` and ``test/<class>/*.png`` (classes in sorted order,
  every image 32×32 RGB or converted to it). Reading images needs Pillow (the ``[images]`` extra),
  which the pickle format does not, so it stays optional.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jointnas.spaces import InputNormalization, UserInputError

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
"""Per-channel mean and standard deviation of the CIFAR-10 training set (pixels scaled to [0, 1])."""
NORMALIZATION = InputNormalization(tuple(255.0 * m for m in MEAN), tuple(255.0 * s for s in STD))
"""`normalize` in raw pixel units (0-255), per channel."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes and NumPy arrays only (what CIFAR batches hold)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
        labels = batch.get(b"labels", batch.get("labels")) if isinstance(batch, dict) else None
        x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(labels, dtype=np.int64)
        if data is None or labels is None or len(x) != len(y):
            raise ValueError("needs matching 'data' and 'labels'")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise UserInputError(
            f"{path} is not a CIFAR-10 python batch ({exc}); expected a pickled dict with 'data' "
            "(N x 3072 uint8) and 'labels'"
        ) from None
    return x, y


def _read_pickle_dir(root: Path) -> tuple[np.ndarray, ...]:
    names = []
    while (root / f"data_batch_{len(names) + 1}").is_file():
        names.append(f"data_batch_{len(names) + 1}")
    train = [_read_batch(root / n) for n in names]
    x_te, y_te = _read_batch(root / "test_batch")
    return np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]), x_te, y_te


def _read_image_split(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    try:
        from PIL import Image
    except ImportError:
        raise UserInputError(
            f"{folder.parent} is an ImageFolder tree, which needs Pillow; install it with "
            "pip install 'jointnas[images]' or use the CIFAR-10 python batches"
        ) from None
    xs, ys = [], []
    for label, name in enumerate(classes):
        for file in sorted((folder / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(file) as img:
                rgb = img.convert("RGB")
                if rgb.size != (32, 32):
                    raise UserInputError(f"{file} is {rgb.size[0]}x{rgb.size[1]}; CIFAR-10 images are 32x32")
                xs.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise UserInputError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _read_image_folder(root: Path) -> tuple[np.ndarray, ...]:
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    test_classes = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    if not classes or test_classes != classes:
        raise UserInputError(
            f"{root}: train/ and test/ must hold the same class folders (train has {classes}, test has {test_classes})"
        )
    return (*_read_image_split(root / "train", classes), *_read_image_split(root / "test", classes))


def read_cifar10(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` as uint8 ``N×3×32×32`` images and int64 labels.

    Raises `UserInputError` naming the expected layout when ``path`` is missing or holds neither format.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise UserInputError(
            f"CIFAR-10 path {root} does not exist; set [task] path to the folder holding data_batch_1..5 "
            "and test_batch (or train/ and test/ class folders)"
        )
    if (root / "data_batch_1").is_file() and (root / "test_batch").is_file():
        return _read_pickle_dir(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _read_image_folder(root)
    raise UserInputError(
        f"{root} is not a CIFAR-10 folder: expected the python batches data_batch_1..5 and test_batch, "
        "or an ImageFolder tree train/<class>/*.png and test/<class>/*.png"
    )


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 images ``N×3×H×W`` → float32, scaled to [0, 1] and standardized per channel."""
    mean = np.asarray(MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(STD, dtype=np.float32).reshape(1, 3, 1, 1)
    return (images.astype(np.float32) / 255.0 - mean) / std


def random_crop_flip(batch: Tensor, generator: torch.Generator | None = None, padding: int = 4) -> Tensor:
    """Standard CIFAR augmentation of a batch ``B×C×H×W``: zero-pad, random crop back, random h-flip.

    Each image gets its own offsets and flip; one gather does all (no per-image Python loop).
    """
    b, c, h, w = batch.shape
    padded = torch.nn.functional.pad(batch, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.arange(w).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    rows = torch.arange(h)[None, :] + dy[:, None]
    return padded[
        torch.arange(b)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
