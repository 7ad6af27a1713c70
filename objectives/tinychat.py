"""tinychat: next-character prediction of a reply, from trigram-hashed query and reply-so-far features.

The microcontroller chat model of the issue: a small MLP that, given a query and the reply written so
far, predicts the reply's next character; generating a reply is repeated prediction until the end
symbol. Its input is a fixed 256-float vector, cheap to compute on an Arduino-class board:

* 128 **query buckets**: each character trigram of the (normalized) query, padded with ``^`` at the
  start and ``$`` at the end, is hashed (CRC-32 mod 128) into a bucket; the counts are divided by the
  number of trigrams (a bag of trigrams, order-free).
* 128 **context buckets**: the trigrams of the reply so far (padded with ``^^`` at the start), hashed
  the same way (with a different salt), each weighted ``0.5 ** age`` where age 0 is the trigram that
  ends at the last written character. The most recent characters dominate, as they do for the next
  character; older ones fade.

Targets are indices into `ALPHABET`: 26 letters, 10 digits, space, ``.``, ``?`` and the end symbol
(40 classes). Text is lower-cased, ``!`` becomes ``.`` and any other character a space (runs of spaces
collapse). A reply of ``n`` characters gives ``n + 1`` samples (the last predicts the end symbol).

File format: UTF-8 text, one ``query|response`` pair per line (split at the first ``|``); blank lines and
lines starting with ``#`` are skipped; a name ending in ``.gz`` is read through gzip.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jointnas.spaces import UserInputError

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .?"
END = len(ALPHABET)
"""Class index of the end-of-reply symbol."""
NUM_CLASSES = len(ALPHABET) + 1
QUERY_BUCKETS = 128
CONTEXT_BUCKETS = 128
NUM_FEATURES = QUERY_BUCKETS + CONTEXT_BUCKETS
CONTEXT_DECAY = 0.5
MIN_CONTEXT_WEIGHT = 1e-3
"""Context trigrams weighted below this are left out."""
QUERY_SALT = b"q"
CONTEXT_SALT = b"c"
ENCODER = {
    "kind": "trigram_crc32",
    "alphabet": ALPHABET,
    "end": END,
    "query_buckets": QUERY_BUCKETS,
    "context_buckets": CONTEXT_BUCKETS,
    "query_salt": QUERY_SALT.decode(),
    "context_salt": CONTEXT_SALT.decode(),
    "context_decay": CONTEXT_DECAY,
    "min_context_weight": MIN_CONTEXT_WEIGHT,
    "reply_case": "upper",
}
"""This encoder as plain data (`TaskData.encoder`): the C generator renders its chat template from it.
Replies are written upper-case, as the training replies are (they are lower-cased for training)."""
MAX_REPLY_CHARS = 64
"""Longest reply generated (characters); the training replies are far shorter."""
_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}


def normalize_text(text: str) -> str:
    """Lower-case ``text`` and map it onto `ALPHABET` (``!`` → ``.``, others → space, spaces collapsed)."""
    text = text.lower().replace("!", ".")
    text = "".join(ch if ch in _INDEX else " " for ch in text)
    return re.sub(" +", " ", text).strip()


def trigram_bucket(trigram: str, buckets: int, salt: bytes) -> int:
    """Stable hash bucket of a trigram (CRC-32, so the same on every machine and in C)."""
    return zlib.crc32(salt + trigram.encode()) % buckets


def encode_query(query: str) -> np.ndarray:
    """128 query buckets: bag of padded trigrams, counts divided by the trigram count."""
    padded = f"^{query}$"
    out = np.zeros(QUERY_BUCKETS, dtype=np.float32)
    grams = [padded[i : i + 3] for i in range(len(padded) - 2)]
    for g in grams:
        out[trigram_bucket(g, QUERY_BUCKETS, QUERY_SALT)] += 1.0
    return out / max(1, len(grams))


def encode_context(prefix: str) -> np.ndarray:
    """128 context buckets: trigrams of ``^^ + prefix``, weighted ``CONTEXT_DECAY ** age``."""
    padded = f"^^{prefix}"
    out = np.zeros(CONTEXT_BUCKETS, dtype=np.float32)
    n = len(padded) - 2
    for i in range(n):
        weight = CONTEXT_DECAY ** (n - 1 - i)
        if weight < MIN_CONTEXT_WEIGHT:
            continue
        out[trigram_bucket(padded[i : i + 3], CONTEXT_BUCKETS, CONTEXT_SALT)] += weight
    return out


def greedy_reply(predict: Callable[[np.ndarray], np.ndarray], query: str, max_chars: int = MAX_REPLY_CHARS) -> str:
    """A reply by greedy decoding, as the C library's ``jointnas_reply`` does it (upper-case).

    ``predict`` maps features ``(1, 256)`` to class scores ``(1, NUM_CLASSES)``; decoding stops at the end
    symbol or after ``max_chars`` characters.

    Example:
        >>> greedy_reply(lambda x: np.eye(NUM_CLASSES)[[END]], "hello")
        ''
    """
    q = encode_query(normalize_text(query))
    reply = ""
    while len(reply) < max_chars:
        k = int(np.argmax(predict(np.concatenate([q, encode_context(reply)])[None])))
        if k == END:
            break
        reply += ALPHABET[k]
    return reply.upper()


def encode_pair(query: str, response: str) -> tuple[np.ndarray, np.ndarray]:
    """All samples of one pair: features ``(len(response) + 1) × 256`` and next-character targets."""
    q = encode_query(query)
    xs, ys = [], []
    for i in range(len(response) + 1):
        xs.append(np.concatenate([q, encode_context(response[:i])]))
        ys.append(_INDEX[response[i]] if i < len(response) else END)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Normalized ``(query, response)`` pairs of a pairs file; `UserInputError` names what was expected."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserInputError(
            f"tinychat path {p} is not a file; set [task] path to a text file of 'query|response' lines "
            "(optionally .gz)"
        )
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rt", encoding="utf-8") as f:
                lines = f.read().splitlines()
        else:
            lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        kind = "gzip-compressed UTF-8 text" if p.suffix == ".gz" else "UTF-8 text"
        raise UserInputError(f"{p} cannot be read as {kind}: {exc}") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "|" not in line:
            raise UserInputError(f"{p}:{number}: expected one 'query|response' pair per line, got {line[:60]!r}")
        query, response = (normalize_text(part) for part in line.split("|", 1))
        if query and response:
            pairs.append((query, response))
    if len(pairs) < 3:
        raise UserInputError(
            f"{p} holds {len(pairs)} usable 'query|response' pairs; at least 3 are needed (train, validation, test)"
        )
    return pairs


def encode_pairs(pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Features ``N × 256`` (float32) and targets ``N`` (int64) of all ``pairs``."""
    encoded = [encode_pair(q, r) for q, r in pairs]
    return np.concatenate([e[0] for e in encoded]), np.concatenate([e[1] for e in encoded])
