"""MNIST-1D: the generator follows the published recipe; the task keeps the standard 4000/1000 split."""

from __future__ import annotations

import numpy as np
import torch

from jointnas.objectives import TaskConfig, load_task
from jointnas.objectives.mnist1d import SERIES_LENGTH, make_mnist1d, templates, transform


def test_templates_are_ten_standardized_digits_starting_at_zero():
    t = templates()
    assert t.shape == (10, 12)
    assert np.allclose(t[:, 0], 0.0)
    # Standardized then shifted to start at 0 and scaled by 1/6: unit std becomes 1/6.
    assert np.allclose(t.std(1), 1 / 6)
    assert len({tuple(np.round(row, 6)) for row in t}) == 10


def test_transform_is_seeded_and_gives_40_points():
    a = transform(templates()[3], np.random.RandomState(0))
    b = transform(templates()[3], np.random.RandomState(0))
    c = transform(templates()[3], np.random.RandomState(1))
    assert a.shape == (SERIES_LENGTH,) and np.array_equal(a, b) and not np.allclose(a, c)


def test_dataset_is_the_standard_split_balanced_and_standardized():
    state = np.random.get_state()[1].copy()
    data = make_mnist1d()
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is untouched
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.x_train.dtype == np.float32
    counts = np.bincount(np.concatenate([data.y_train, data.y_test]), minlength=10)
    assert (counts == 500).all()
    x = np.concatenate([data.x_train, data.x_test])
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-4
    again = make_mnist1d.__wrapped__()  # regenerate, bypassing the cache
    assert np.array_equal(again.x_train, data.x_train) and np.array_equal(again.y_test, data.y_test)


def test_task_takes_validation_from_training_and_keeps_the_test_split():
    task = load_task(TaskConfig(dataset="mnist1d", val_fraction=0.2))
    assert task.input_shape == (1, 40) and task.num_classes == 10
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (3200, 800, 1000)
    assert task.x_train.shape[1:] == (1, 40) and task.y_train.dtype == torch.int64
    assert torch.equal(task.x_test[:, 0], torch.from_numpy(make_mnist1d().x_test))
    other = load_task(TaskConfig(dataset="mnist1d", split_seed=1))
    assert not torch.equal(other.y_val, task.y_val) and torch.equal(other.y_test, task.y_test)
