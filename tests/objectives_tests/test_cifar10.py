"""CIFAR-10 from a folder: python batches and ImageFolder, normalization, split, augmentation, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from jointnas.objectives import TaskConfig, load_task
from jointnas.objectives.cifar10 import MEAN, STD, random_crop_flip, read_cifar10
from jointnas.spaces import UserInputError

from ..datafiles import cifar_images, write_cifar_batches, write_image_folder


def test_reads_two_python_batches_and_the_test_batch(tmp_path):
    root = write_cifar_batches(tmp_path / "cifar", per_batch=30, batches=2, test=20)
    x, y, x_test, y_test = read_cifar10(root)
    assert x.shape == (60, 3, 32, 32) and x.dtype == np.uint8 and y.shape == (60,)
    assert x_test.shape == (20, 3, 32, 32)
    data, labels = cifar_images(30, seed=0)
    assert np.array_equal(x[:30].reshape(30, -1), data) and list(y[:30]) == labels  # channel-major rows


def test_task_normalizes_splits_and_augments(tmp_path):
    root = write_cifar_batches(tmp_path / "cifar", per_batch=50, batches=2, test=30)
    task = load_task(TaskConfig(dataset="cifar10", path=str(root), val_fraction=0.2))
    assert task.input_shape == (3, 32, 32) and task.num_classes == 10
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (80, 20, 30)
    assert torch.bincount(task.y_val).tolist() == [2] * 10  # stratified
    raw = read_cifar10(root)[2][0, 1, 0, 0]  # test image 0, green channel, top-left pixel
    assert task.x_test[0, 1, 0, 0].item() == pytest.approx((raw / 255 - MEAN[1]) / STD[1], rel=1e-5)
    assert task.augment is random_crop_flip
    assert load_task(TaskConfig(dataset="cifar10", path=str(root), augment=False)).augment is None


def test_random_crop_flip_shifts_and_mirrors_each_image():
    batch = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    out = random_crop_flip(batch, torch.Generator().manual_seed(0), padding=1)
    assert out.shape == batch.shape
    for img, orig in zip(out, batch, strict=True):
        # Every output equals the zero-padded original (possibly mirrored) cropped at some offset.
        padded = torch.nn.functional.pad(orig, (1, 1, 1, 1))
        views = [padded[:, dy : dy + 4, dx : dx + 4] for dy in range(3) for dx in range(3)]
        views += [v.flip(-1) for v in views]
        assert any(torch.equal(img, v) for v in views)
    outs = {tuple(random_crop_flip(batch, torch.Generator().manual_seed(s), 1).flatten().tolist()) for s in range(8)}
    assert len(outs) > 1  # different seeds, different crops
    a = random_crop_flip(batch, torch.Generator().manual_seed(3), 1)
    assert torch.equal(a, random_crop_flip(batch, torch.Generator().manual_seed(3), 1))


def test_image_folder_layout(tmp_path):
    pytest.importorskip("PIL")
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    x, y, x_test, y_test = read_cifar10(root)
    assert x.shape == (20, 3, 32, 32) and sorted(set(y.tolist())) == list(range(10))
    data, labels = cifar_images(20, seed=0)
    first = int(np.flatnonzero(y == 0)[0])  # files load class by class, in sorted order
    assert np.array_equal(x[first].reshape(-1), data[labels.index(0)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "expected the python batches data_batch_1..5 and test_batch"),
        (
            lambda p: (write_cifar_batches(p / "c"), (p / "c" / "data_batch_1").unlink())[0],
            "is not a CIFAR-10 folder",
        ),
    ],
)
def test_missing_or_malformed_folder_names_what_was_expected(tmp_path, make, message):
    with pytest.raises(UserInputError, match=message):
        load_task(TaskConfig(dataset="cifar10", path=str(make(tmp_path))))


def test_a_batch_of_the_wrong_content_or_a_hostile_pickle_is_refused(tmp_path):
    root = write_cifar_batches(tmp_path / "c")
    (root / "test_batch").write_bytes(pickle.dumps({b"labels": [1, 2]}))
    with pytest.raises(UserInputError, match="not a CIFAR-10 python batch.*'data'"):
        read_cifar10(root)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (root / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UserInputError, match="refusing to load builtins.print"):
        read_cifar10(root)


def test_config_requires_a_path():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"set \[task\] path"):
        TaskConfig(dataset="cifar10")


def test_pipeline_trains_on_augmented_batches(tmp_path):
    from jointnas.compression import PipelineConfig, run_pipeline
    from jointnas.spaces import Candidate, Stage

    root = write_cifar_batches(tmp_path / "cifar", per_batch=20, batches=2, test=10)
    task = load_task(TaskConfig(dataset="cifar10", path=str(root), val_fraction=0.25))
    seen = []

    def counting(batch, generator):
        seen.append(batch.shape)
        return task.augment(batch, generator)

    c = Candidate("cnn", (3, 32, 32), 10, (Stage(8, 1, 3, 2, 2),), stem_channels=8)
    config = PipelineConfig(train_epochs=1, finetune_epochs=1, steps=["finetune"], batch_size=16)
    result = run_pipeline(c, task.x_train, task.y_train, task.x_val, task.y_val, config, augment=counting)
    assert seen == [(16, 3, 32, 32), (14, 3, 32, 32)] * 2  # 30 training images, train + finetune
    assert 0.0 <= result.reports[-1].val_accuracy <= 1.0
