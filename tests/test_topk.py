"""The fused blocked top-k kernel (edmem/modeling/topk.py) against the plain ``(q @ Eᵀ).topk``."""

from __future__ import annotations

import pytest
import torch

from edmem.index import LeanTable
from edmem.modeling.memory import chunked_topk
from edmem.modeling.topk import DenseRows, fused_topk


def plain(q: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (q @ rows.t()).topk(k, dim=1)


@pytest.mark.parametrize("block", [16, 100, 257, 4096])
def test_threshold_merge_equals_plain_topk(block):
    g = torch.Generator().manual_seed(0)
    rows, q = torch.randn(3000, 32, generator=g), torch.randn(9, 32, generator=g)
    ref_v, ref_i = plain(q, rows, 16)
    v, i = fused_topk(q, DenseRows(rows), 16, block_rows=block)
    assert torch.equal(i, ref_i)
    assert torch.allclose(v, ref_v, atol=1e-5)


def test_rows_sorted_worst_case_every_block_enters_the_top_k():
    # scores rise along the table: every block beats the running top-k (the merge's widest case)
    q = torch.ones(3, 4)
    rows = torch.arange(500, dtype=torch.float32)[:, None].repeat(1, 4)
    v, i = fused_topk(q, DenseRows(rows), 20, block_rows=32)
    assert torch.equal(i, torch.arange(499, 479, -1).repeat(3, 1))
    assert torch.equal(v, (q @ rows.t()).topk(20, dim=1).values)


def test_entity_mask_matches_masked_plain_topk_and_chunked_topk():
    g = torch.Generator().manual_seed(1)
    weight, q = torch.randn(8, 700, generator=g), torch.randn(5, 8, generator=g)   # (d, N) like the model
    mask = torch.zeros(700, dtype=torch.long)
    top = (q @ weight).topk(3, dim=1).indices.reshape(-1)
    mask[top] = 1                                       # hide every query's 3 best rows
    scores = (q @ weight).masked_fill(mask.bool(), torch.finfo(torch.float32).min)
    ref_v, ref_i = scores.topk(10, dim=1)
    v, i = chunked_topk(q, weight, 10, chunk_size=64, entity_mask=mask)
    assert torch.equal(i, ref_i) and torch.allclose(v, ref_v, atol=1e-5)
    assert not bool(torch.isin(i, top).any())
    # the traced path (scores kept) gives the same answer
    tv, ti = chunked_topk(q, weight, 10, chunk_size=64, entity_mask=mask, keep_scores=True)
    assert torch.equal(ti, i)


def test_more_k_than_rows_and_empty_table():
    rows, q = torch.randn(5, 4), torch.randn(2, 4)
    v, i = fused_topk(q, DenseRows(rows), 10, block_rows=2)
    assert i.shape == (2, 5) and torch.equal(i, plain(q, rows, 5).indices)
    v, i = fused_topk(q, DenseRows(rows[:0]), 10)
    assert v.shape == (2, 0) and i.dtype == torch.long
    v, i = fused_topk(q[:0], DenseRows(rows), 3)        # a batch without mentions
    assert v.shape == (0, 3) and i.shape == (0, 3) and i.dtype == torch.long


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "int8"])
def test_lean_table_blocks_equal_plain_topk_over_its_own_rows(dtype):
    g = torch.Generator().manual_seed(2)
    weight, q = torch.randn(16, 2000, generator=g), torch.randn(6, 16, generator=g)
    table = LeanTable.from_weight(weight, dtype)
    ref_v, ref_i = plain(q, table.gather(torch.arange(2000)), 12)   # the dequantised rows
    v, i = fused_topk(q, table, 12, block_rows=128)
    assert torch.allclose(v, ref_v, atol=1e-4)
    assert torch.equal(i, ref_i)
