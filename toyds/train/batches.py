"""Batches for next-token training: (prompt, completion) pairs as token ids, padded or packed.

Each pair becomes its token ids and the length of its prompt; a batch is either one
pair per row, right-padded (`collate`), or several pairs packed into shared rows
(`collate_packed`), where a segment number keeps each pair's attention and rotary
positions to itself (core/model.py: GPT.forward(segments=)). Packing computes the
same masked loss over fewer padded positions: on the mixed base corpus (12-token
answers beside 40-token traces) it keeps 95% of positions real, against 45% padded
(examples/benchmarks/bench_core.py). Worked example:

    collate([("<bos>1+2=", "<answer>3</answer><eos>")] encoded):
    position   0      1   2   3   4        5         6    7
    input      <bos>  1   +   2   =        <answer>  3    </answer>
    target     1      +   2   =   <answer> 3         </answer> <eos>
    mask       0      0   0   0   1        1         1    1       (the completion, from '=' on)

Shapes: B pairs, R packed rows, T positions per row.
"""

from __future__ import annotations

import torch

from toyds.core.tokenizer import Tokenizer


def encode_pairs(pairs: list[tuple[str, str]], tok: Tokenizer) -> list[tuple[list[int], int]]:
    """Each (prompt, completion) as (token ids, prompt length)."""
    out = []
    for prompt, completion in pairs:
        p = tok.encode(prompt)
        out.append((p + tok.encode(completion), len(p)))
    return out


def collate(examples: list[tuple[list[int], int]], pad_id: int, device="cpu"):
    """Right-pad a batch. Returns inputs (B, T), targets (B, T), loss mask (B, T).

    targets[b, t] = ids[b, t+1]; mask is True where that target is a completion token.
    """
    T = max(len(ids) for ids, _ in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), pad_id, dtype=torch.long)
    m = torch.zeros(len(examples), T, dtype=torch.bool)
    for i, (ids, plen) in enumerate(examples):
        n = len(ids) - 1
        x[i, :n] = torch.tensor(ids[:-1])
        y[i, :n] = torch.tensor(ids[1:])
        m[i, plen - 1 : n] = True  # predict from the last prompt token onwards
    return x.to(device), y.to(device), m.to(device)


def pack(lengths: list[int], width: int) -> list[list[int]]:
    """Group sequences of `lengths` into rows of at most `width` positions: first fit, longest first.

    pack([5, 3, 2, 4], 6) -> [[0], [3, 2], [1]]: 5 | 4 + 2 | 3. Every sequence lands whole in
    one row, so no sequence is cut and the rows hold the same tokens as one per row.
    """
    rows, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if lengths[i] > width:
            raise ValueError(f"a sequence of {lengths[i]} positions does not fit a row of {width}")
        j = next((j for j, r in enumerate(room) if r >= lengths[i]), None)
        if j is None:
            rows.append([i])
            room.append(width - lengths[i])
        else:
            rows[j].append(i)
            room[j] -= lengths[i]
    return rows


def collate_packed(examples: list[tuple[list[int], int]], pad_id: int, device="cpu", return_layout: bool = False):
    """Pack a batch into shared rows. Returns inputs, targets, loss mask and segments, each (R, T)
    (and with return_layout, (row, offset, example) for every example, to place per-example data alike).

    The rows are as wide as the longest example, R <= B of them. segments[r, t] is the
    number of the example at that position within its row (-1 for padding): the model
    keeps attention and rotary positions inside each example (GPT.forward(segments=)),
    so the masked loss is the one `collate` gives, computed over fewer padded positions.
    """
    T = max(len(ids) for ids, _ in examples) - 1
    rows = pack([len(ids) - 1 for ids, _ in examples], T)
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), pad_id, dtype=torch.long)
    m = torch.zeros(len(rows), T, dtype=torch.bool)
    seg = torch.full((len(rows), T), -1, dtype=torch.long)
    layout = []
    for r, members in enumerate(rows):
        at = 0
        for k, i in enumerate(members):
            layout.append((r, at, i))
            ids, plen = examples[i]
            n = len(ids) - 1
            x[r, at : at + n] = torch.tensor(ids[:-1])
            y[r, at : at + n] = torch.tensor(ids[1:])
            m[r, at + plen - 1 : at + n] = True  # predict from the last prompt token onwards
            seg[r, at : at + n] = k
            at += n
    out = (x.to(device), y.to(device), m.to(device), seg.to(device))
    return (*out, layout) if return_layout else out
