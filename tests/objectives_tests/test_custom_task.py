"""Custom tasks named "module:function": accepted return forms, and errors that name the contract."""

from __future__ import annotations

import textwrap

import pytest
import torch
from pydantic import ValidationError

from jointnas.objectives import TaskConfig, load_task
from jointnas.spaces import UserInputError

MODULE = """
import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset


class Pairs(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((2, 3), float(i)), i % 3


def arrays(config):
    rng = np.random.default_rng(0)
    split = lambda n: (rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 4, n))
    return split(20), split(8), split(8), (6,)


def datasets(config):
    x = torch.randn(12, 2, 3)
    return TensorDataset(x, torch.arange(12) % 3), Pairs(6), Pairs(5), (2, 3), 5


def uses_path(config):
    n = int(open(config.path).read())
    return (np.zeros((n, 1)), np.zeros(n, dtype=int)), (np.zeros((2, 1)), [0, 1]), (np.zeros((2, 1)), [1, 0]), (1,)


def wrong_type(config):
    return {"train": None}


def wrong_shape(config):
    x = np.zeros((4, 5))
    y = np.zeros(4, dtype=int)
    return (x, y), (x, y), (x, y), (6,)


def not_a_dataset(config):
    return "train.csv", "val.csv", "test.csv", (3,)
"""


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    (tmp_path / "my_tasks_for_test.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_tasks_for_test"


def test_array_pairs_with_inferred_class_count(custom_module):
    task = load_task(TaskConfig(dataset=f"{custom_module}:arrays"))
    assert task.input_shape == (6,) and (len(task.x_train), len(task.x_val), len(task.x_test)) == (20, 8, 8)
    assert task.x_train.dtype == torch.float32 and task.y_train.dtype == torch.int64
    top = max(int(y.max()) for y in (task.y_train, task.y_val, task.y_test))
    assert task.num_classes == top + 1


def test_torch_datasets_with_explicit_class_count(custom_module):
    task = load_task(TaskConfig(dataset=f"{custom_module}:datasets"))
    assert task.input_shape == (2, 3) and task.num_classes == 5
    assert task.x_val.shape == (6, 2, 3) and task.y_val.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.equal(task.x_test[4], torch.full((2, 3), 4.0))


def test_function_receives_the_task_config(custom_module, tmp_path):
    (tmp_path / "n.txt").write_text("7")
    task = load_task(TaskConfig(dataset=f"{custom_module}:uses_path", path=str(tmp_path / "n.txt")))
    assert len(task.x_train) == 7


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("wrong_type", r"returned dict; expected \(train, val, test, input_shape\)"),
        ("wrong_shape", r"train inputs have shape \(5,\), not input_shape \(6,\)"),
        ("not_a_dataset", "the train split is not a data set .*expected a torch Dataset of \\(x, y\\) samples"),
        ("missing", "has no function 'missing'"),
    ],
)
def test_wrong_returns_name_what_was_expected(custom_module, function, message):
    with pytest.raises(UserInputError, match=message):
        load_task(TaskConfig(dataset=f"{custom_module}:{function}"))


def test_unimportable_module_and_bad_syntax():
    with pytest.raises(UserInputError, match="cannot import module 'no_such_module_xyz'"):
        load_task(TaskConfig(dataset="no_such_module_xyz:load"))
    with pytest.raises(ValidationError, match="must read 'module:function'"):
        TaskConfig(dataset="a b:c")


def test_the_documented_example_works(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs/tasks.md").read_text()
    code = re.search(r"```python\n(# mytasks\.py\n.*?)```", doc, re.S).group(1)
    (tmp_path / "mytasks.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_task(TaskConfig(dataset="mytasks:sine_or_square"))
    assert task.input_shape == (1, 64) and task.num_classes == 2
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (600, 200, 200)
    assert set(task.y_train.tolist()) == {0, 1}
