"""tinychat: the pairs file (plain or gzipped), the 256-float trigram-hash encoding, targets and splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jointnas.objectives import TaskConfig, load_task
from jointnas.objectives.tinychat import (
    ALPHABET,
    END,
    NUM_CLASSES,
    encode_context,
    encode_pair,
    encode_query,
    normalize_text,
    read_pairs,
    trigram_bucket,
)
from jointnas.spaces import UserInputError

from ..datafiles import PAIRS, write_pairs


def test_alphabet_has_40_classes_and_text_maps_onto_it():
    assert NUM_CLASSES == 40 and END == 39 and len(set(ALPHABET)) == 39
    assert normalize_text("Hi,  THERE!  Café 42?") == "hi there. caf 42?"


def test_encoding_is_256_floats_with_query_bag_and_decayed_context():
    q = encode_query("hi")  # padded "^hi$": trigrams "^hi", "hi$"
    assert q.shape == (128,) and q.sum() == pytest.approx(1.0)
    assert q[trigram_bucket("^hi", 128, b"q")] >= 0.5
    c = encode_context("ab")  # "^^ab": "^^a" (age 1), "^ab" (age 0)
    assert c[trigram_bucket("^ab", 128, b"c")] >= 1.0
    assert c.sum() == pytest.approx(1.5)
    x, y = encode_pair("hi", "yo.")
    assert x.shape == (4, 256) and y.tolist() == [ALPHABET.index("y"), ALPHABET.index("o"), ALPHABET.index("."), END]
    assert np.array_equal(x[:, :128], np.repeat(q[None], 4, 0))  # the query part is the same for every step
    assert trigram_bucket("abc", 128, b"q") == trigram_bucket("abc", 128, b"q")  # stable (CRC-32)


def test_reads_plain_and_gzipped_files_alike(tmp_path):
    plain = read_pairs(write_pairs(tmp_path / "pairs.txt"))
    gz = read_pairs(write_pairs(tmp_path / "pairs.txt.gz"))
    assert plain == gz == [(normalize_text(q), normalize_text(r)) for q, r in PAIRS]


def test_task_splits_by_pair_and_counts_one_sample_per_character(tmp_path):
    path = write_pairs(tmp_path / "pairs.txt.gz")
    task = load_task(TaskConfig(dataset="tinychat", path=str(path), val_fraction=0.2, test_fraction=0.2))
    assert task.input_shape == (256,) and task.num_classes == 40
    total = sum(len(normalize_text(r)) + 1 for _, r in PAIRS)
    assert len(task.x_train) + len(task.x_val) + len(task.x_test) == total
    assert int((task.y_val == END).sum()) == 2 and int((task.y_test == END).sum()) == 2  # 2 replies each
    assert task.x_train.dtype == torch.float32 and task.y_train.max() < 40


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is not a file"),
        ("hi there\nno separator\n", "expected one 'query|response' pair per line"),
        ("a|b\n", "at least 3 are needed"),
    ],
)
def test_bad_files_name_what_was_expected(tmp_path, content, message):
    path = tmp_path / "pairs.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserInputError, match=message):
        load_task(TaskConfig(dataset="tinychat", path=str(path)))


def test_corrupt_gzip_is_a_user_error(tmp_path):
    path = tmp_path / "pairs.txt.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(UserInputError, match="gzip-compressed UTF-8 text"):
        read_pairs(path)
