"""The one static activation arena, planned ahead: tensor lifetimes, in-place ops, greedy offsets.

Step 0 writes the model input (``jn_input_store``); step ``i`` runs call ``i − 1``. A tensor lives from
the step that writes it to the last step that reads it (views share their tensor's storage; the logits
live to the end). Ops that may work in place (element-wise adds and clamps, depthwise convolutions
staging one output channel at a time in a scratch buffer) reuse a dying input's storage. Storages are
then placed largest first at the lowest offset free over their lifetime (TFLite Micro's greedy plan),
aligned to their element size.

Example:
    >>> plan = plan_arena([Buffer(0, 100, 1), Buffer(1, 10, 1)], [Step((0,), 1)], 0)
    >>> plan.offsets, plan.total_bytes
    ({0: 0, 1: 100}, 110)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Buffer:
    """A storage: ``id``, ``nbytes`` and alignment in bytes."""

    id: int
    nbytes: int
    align: int


@dataclass(frozen=True)
class Step:
    """One call: storages it reads and the one it writes; ``inplace`` storages the output may reuse.

    ``stage_bytes``: scratch the call needs when it does run in place (depthwise convolutions).
    """

    reads: tuple[int, ...]
    writes: int
    inplace: tuple[int, ...] = ()
    stage_bytes: int = 0
    stage_align: int = 1


@dataclass
class ArenaPlan:
    """Byte offset of every storage (aliases share one) and of each in-place step's scratch."""

    offsets: dict[int, int]
    stages: dict[int, int] = field(default_factory=dict)
    total_bytes: int = 0


def _align(offset: int, align: int) -> int:
    return -(-offset // align) * align


def _place(items: list[tuple[int, int, int, int]]) -> tuple[list[int], int]:
    """Offsets of ``(nbytes, align, first, last)`` items, largest first, lowest free offset."""
    offsets = [0] * len(items)
    placed: list[int] = []
    for i in sorted(range(len(items)), key=lambda i: (-items[i][0], items[i][2])):
        size, align, first, last = items[i]
        busy = sorted(
            (offsets[j], offsets[j] + items[j][0]) for j in placed if items[j][2] <= last and first <= items[j][3]
        )
        offset = 0
        for lo, hi in busy:
            if _align(offset, align) + size <= lo:
                break
            offset = max(offset, hi)
        offsets[i] = _align(offset, align)
        placed.append(i)
    return offsets, max((offsets[i] + items[i][0] for i in range(len(items))), default=0)


def plan_arena(buffers: list[Buffer], steps: list[Step], input_storage: int) -> ArenaPlan:
    """Offsets for ``buffers`` used by ``steps`` (`Step` i runs at step i + 1; the input is written at 0)."""
    size = {b.id: b.nbytes for b in buffers}
    align = {b.id: b.align for b in buffers}
    first, last = {input_storage: 0}, {input_storage: 0}
    for i, step in enumerate(steps, 1):
        for r in step.reads:
            last[r] = i
        first.setdefault(step.writes, i)
        last[step.writes] = max(last.get(step.writes, i), i)
    end = len(steps) + 1
    last[steps[-1].writes if steps else input_storage] = end  # the logits are read after the last call
    alias: dict[int, int] = {}
    stages: dict[int, tuple[int, int]] = {}
    for i, step in enumerate(steps, 1):
        host = next((r for r in step.inplace if last.get(alias.get(r, r)) == i and r != step.writes), None)
        if host is None:
            continue
        host = alias.get(host, host)
        alias[step.writes] = host
        size[host] = max(size[host], size[step.writes])
        align[host] = max(align[host], align[step.writes])
        last[host] = max(last[host], last[step.writes])
        if step.stage_bytes:
            stages[i] = (step.stage_bytes, step.stage_align)
    roots = [b.id for b in buffers if b.id not in alias and b.id in first]
    items = [(size[r], align[r], first[r], last[r]) for r in roots]
    items += [(nbytes, a, i, i) for i, (nbytes, a) in stages.items()]
    offsets, total = _place(items)
    plan = ArenaPlan({r: offsets[k] for k, r in enumerate(roots)}, total_bytes=total)
    for k, i in enumerate(stages):
        plan.stages[i - 1] = offsets[len(roots) + k]
    for child, host in alias.items():
        plan.offsets[child] = plan.offsets[host]
    return plan
