"""Tiny data files in the real formats (CIFAR-10 python batches, ImageFolder, gzipped chat pairs)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

PAIRS = [
    ("hi", "hello."),
    ("hello", "hi there."),
    ("how are you?", "fine thanks."),
    ("what is your name?", "i am tiny."),
    ("bye", "goodbye."),
    ("good morning", "morning."),
    ("are you a robot?", "yes i am."),
    ("what time is it?", "it is 12."),
    ("thanks", "you are welcome."),
    ("who made you?", "a small team."),
]


def cifar_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """``n`` random 32×32 RGB images, channel-major rows of 3072 uint8, with labels 0-9 cycling.

    Each class gets a distinct mean colour so a model can learn something from a few images.
    """
    rng = np.random.default_rng(seed)
    labels = [i % 10 for i in range(n)]
    base = np.asarray(labels, dtype=np.float64)[:, None] * 20 + 30
    data = np.clip(base + rng.normal(0, 20, (n, 3072)), 0, 255).astype(np.uint8)
    return data, labels


def write_cifar_batches(folder: Path, per_batch: int = 40, batches: int = 2, test: int = 40) -> Path:
    """A CIFAR-10 python folder with ``data_batch_1..batches`` and ``test_batch`` (pickled as the original)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i + 1}" for i in range(batches)] + ["test_batch"]
    for k, name in enumerate(names):
        data, labels = cifar_images(test if name == "test_batch" else per_batch, seed=k)
        with (folder / name).open("wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, f, protocol=2)
    return folder


def write_image_folder(folder: Path, per_class: int = 2) -> Path:
    """ImageFolder tree ``train/<class>/*.png`` and ``test/<class>/*.png`` (needs Pillow)."""
    from PIL import Image

    for split, seed in (("train", 0), ("test", 1)):
        data, labels = cifar_images(10 * per_class, seed)
        for i, (row, label) in enumerate(zip(data, labels, strict=True)):
            d = folder / split / f"class{label}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0)).save(d / f"{i}.png")
    return folder


def write_pairs(path: Path, pairs: list[tuple[str, str]] = PAIRS, repeat: int = 1) -> Path:
    """A ``query|response`` file; gzipped when ``path`` ends in ``.gz``."""
    text = "# tiny chat\n" + "".join(f"{q}|{r}\n" for q, r in pairs * repeat)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
