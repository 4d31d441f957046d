"""Memory-read backends (exact / hnsw / ivf / ivfpq), the lean table and the saved index files,
on tiny tables (the 1M/5M measurements live in benchmarks/bench_memory.py)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from edmem.index import (DTYPES, ExactIndex, FaissIndex, Knobs, LeanTable, MemoryIndexError,
                         attach_memory_index, load_memory_index, table_digest)
from edmem.modeling.model import EDMemModel
from edmem.modeling.topk import DenseRows, fused_topk

from tests.test_model import K, el_batch, tiny_config

EVAL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")


def clustered(n: int, d: int, clusters: int = 20, seed: int = 0) -> torch.Tensor:
    """(N, d) rows around ``clusters`` centres: the shape of data IVF / HNSW are made for."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g) * 3
    return centres[torch.randint(clusters, (n,), generator=g)] + torch.randn(n, d, generator=g)


def test_fused_topk_equals_full_topk_in_both_layouts():
    rows, q = torch.randn(1000, 16), torch.randn(7, 16)
    ref_v, ref_i = (q @ rows.t()).topk(10, dim=1)
    for table in (DenseRows(rows), DenseRows(rows.t().contiguous(), columns=True)):
        for block in (64, 333, 5000):
            v, i = fused_topk(q, table, 10, block_rows=block)
            assert torch.equal(i, ref_i)
            assert torch.allclose(v, ref_v, atol=1e-5)
    v, i = fused_topk(q, DenseRows(rows[:4]), 10, block_rows=2)   # k larger than the table
    assert i.shape == (7, 4) and torch.equal(i, (q @ rows[:4].t()).topk(4, dim=1).indices)


def test_fused_topk_shards_a_large_table_over_the_threads(monkeypatch):
    """Above SHARD_MIN_ROWS rows per thread each thread scans its own rows; same top-k, masked
    rows still excluded, and the caller's thread count untouched."""
    from edmem.modeling import topk

    monkeypatch.setattr(topk, "SHARD_MIN_ROWS", 500)
    rows, q = torch.randn(3001, 16), torch.randn(9, 16)
    mask = torch.zeros(3001, dtype=torch.long)
    mask[(q @ rows.t()).argmax(dim=1)] = 1           # every query's best row is hidden
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        v, i = fused_topk(q, DenseRows(rows), 10, block_rows=256)
        mv, mi = fused_topk(q, DenseRows(rows), 10, block_rows=256, entity_mask=mask)
        assert torch.get_num_threads() == 3
        assert topk._POOL is not None and topk._POOL[0] == 3   # the sharded path ran
    finally:
        torch.set_num_threads(before)
    ref_v, ref_i = (q @ rows.t()).topk(10, dim=1)
    assert torch.equal(i, ref_i) and torch.allclose(v, ref_v, atol=1e-5)
    masked = (q @ rows.t()).masked_fill(mask.bool(), float("-inf")).topk(10, dim=1)
    assert torch.equal(mi, masked.indices)


def test_sharded_fused_topk_keeps_the_callers_grad_and_inference_modes(monkeypatch):
    """Workers replay the caller's modes: a parameter table read under no_grad builds no graph,
    under inference_mode it works, and with grad on the scores still reach the table."""
    from edmem.modeling import topk

    monkeypatch.setattr(topk, "SHARD_MIN_ROWS", 100)
    table = torch.nn.Parameter(torch.randn(16, 900))          # (d, N), the model's layout
    q = torch.randn(4, 16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            v, _ = fused_topk(q, DenseRows(table, columns=True), 5)
        assert v.grad_fn is None and not v.requires_grad
        with torch.inference_mode():
            v_inf, i_inf = fused_topk(q, DenseRows(table, columns=True), 5)
        assert torch.equal(v_inf, v)
        v_grad, _ = fused_topk(q, DenseRows(table, columns=True), 5)
        v_grad.sum().backward()
        assert table.grad is not None and table.grad.abs().sum() > 0
    finally:
        torch.set_num_threads(before)
    assert torch.equal(i_inf, (q @ table.detach()).topk(5, dim=1).indices)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lean_table_round_trip_and_mmap_load(tmp_path, dtype):
    weight = torch.randn(16, 300)                       # (d, N) like the model's parameter
    table = LeanTable.from_weight(weight, dtype, source_digest="sha256:x", block_rows=64)
    path = tmp_path / "t.safetensors"
    table.save(path)
    loaded = LeanTable.load(path)
    assert loaded.dtype == dtype and loaded.source_digest == "sha256:x"
    assert (loaded.num_rows, loaded.dim) == (300, 16)
    assert torch.equal(loaded.rows, table.rows)
    # memory-mapped, not read: the rows live in the file's mapping, not in a torch allocation
    assert not loaded.rows.is_shared() and loaded.rows.untyped_storage().nbytes() == table.rows.numel() * table.rows.element_size()
    import numpy as np
    assert isinstance(loaded.rows.numpy() if dtype != "bf16" else loaded.rows.view(torch.int16).numpy(), np.ndarray)
    back = loaded.gather(torch.arange(300))
    rows = weight.t()
    if dtype == "fp32":
        assert torch.equal(back, rows)
    elif dtype == "int8":   # per-row scale: every element within half a quantisation step
        step = rows.abs().amax(dim=1, keepdim=True) / 127
        assert bool(((back - rows).abs() <= step / 2 + 1e-7).all())
        assert loaded.scale is not None and loaded.scale.shape == (300,)
    else:
        rel = 2 ** -8 if dtype == "fp16" else 2 ** -7
        assert bool(((back - rows).abs() <= rows.abs() * rel + 1e-6).all())


def _mapped_rss_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps", encoding="utf-8"):
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps (Linux)")
@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_loaded_table_streams_its_pages_unless_resident(tmp_path, dtype):
    """A scan of a loaded table leaves its rows in the page cache, not in the process; the
    scores are the same either way, and ``resident=True`` keeps the pages."""
    weight = torch.randn(256, 8192)                     # 8 MB of fp32 rows, 2 MB of int8
    path = tmp_path / "t.safetensors"
    LeanTable.from_weight(weight, dtype).save(path)
    q = torch.randn(5, 256)
    streamed, resident = LeanTable.load(path), LeanTable.load(path, resident=True)
    assert streamed.pages is not None and resident.pages is None
    v_s, i_s = fused_topk(q, streamed, 10, block_rows=1024)
    after_stream = _mapped_rss_kb(path)
    v_r, i_r = fused_topk(q, resident, 10, block_rows=1024)
    after_both = _mapped_rss_kb(path)
    assert torch.equal(i_s, i_r) and torch.equal(v_s, v_r)
    table_kb = resident.rows.numel() * resident.rows.element_size() // 1024
    assert after_stream < table_kb // 8               # at most a few partial pages stay
    assert after_both - after_stream > table_kb * 3 // 4
    streamed.dense(0, 4096), streamed.dense(4096, 8192)   # building an index streams too
    assert _mapped_rss_kb(path) - after_both < table_kb // 8
    ids = torch.randint(0, 8192, (40, 30), generator=torch.Generator().manual_seed(0))
    assert torch.equal(streamed.gather(ids), resident.gather(ids))   # scattered rows, any order
    assert _mapped_rss_kb(path) - after_both < table_kb // 8


def test_lean_table_load_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{nope")
    with pytest.raises(MemoryIndexError, match="not a safetensors file"):
        LeanTable.load(bad)
    with pytest.raises(MemoryIndexError, match="file not found"):
        LeanTable.load(tmp_path / "missing.safetensors")


def test_int8_scores_match_dequantised_rows():
    weight = torch.randn(32, 500)
    table = LeanTable.from_weight(weight, "int8")
    q = torch.randn(3, 32)
    assert torch.allclose(table.block_scores(q.t(), 100, 400), table.gather(torch.arange(100, 400)) @ q.t(), atol=1e-4)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_approximate_backends_find_the_exact_top_k(kind):
    rows = clustered(2000, 32)
    table = LeanTable.from_weight(rows, "fp32", columns=False)
    knobs = Knobs(nlist=16, nprobe=16, ef_search=200, ef_construction=200, pq_bytes=4, rerank=200)
    index = FaissIndex.build(kind, table, knobs)
    q = rows[torch.arange(0, 2000, 48)] + 0.1 * torch.randn(42, 32)
    ref_v, ref_i = (q @ rows.t()).topk(10, dim=1)
    v, i = index.search(q, 10)
    assert v.shape == i.shape == (42, 10)
    assert torch.equal(i[:, 0], ref_i[:, 0])                                    # top-1
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(i, ref_i)) / ref_i.numel()
    assert recall >= (0.99 if kind != "ivfpq" else 0.95)
    assert torch.allclose(v, (q[:, None, :] * rows[i]).sum(-1), atol=1e-4)     # exact re-scored


def test_ivf_with_one_probe_is_approximate_and_knob_matters():
    rows = clustered(2000, 32, clusters=64)
    table = LeanTable.from_weight(rows, "fp32", columns=False)
    q = torch.randn(50, 32) * 3
    ref = (q @ rows.t()).topk(50, dim=1).indices

    def recall(nprobe: int) -> float:
        index = FaissIndex.build("ivf", table, Knobs(nlist=64, nprobe=nprobe))
        found = index.search(q, 50)[1]
        return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, ref)) / ref.numel()

    assert recall(1) < recall(64) == 1.0


@pytest.mark.parametrize("kind, dtype", [("exact", "fp32"), ("exact", "int8"), ("ivf", "int8"),
                                         ("hnsw", "fp16"), ("ivfpq", "fp32")])
def test_saved_index_reloads_and_stale_index_is_an_error(tmp_path, kind, dtype):
    torch.manual_seed(0)
    weight = clustered(2000, 16).t().contiguous()          # the model's (d, N) layout
    knobs = dict(nlist=8, nprobe=8, pq_bytes=4)
    first = load_memory_index(tmp_path, weight, kind, dtype, **knobs)
    q = torch.randn(5, 16)
    v1, i1 = first.search(q, 10)
    again = load_memory_index(tmp_path, weight, kind, dtype, **knobs)    # reloaded from the files
    assert torch.equal(again.search(q, 10)[1], i1)
    if kind == "exact" and dtype == "fp32":
        assert not (tmp_path / "memory_index").exists()    # reads the live parameter: nothing saved
        return
    lean = load_memory_index(tmp_path, None, kind, dtype, **knobs)      # no float table at all
    assert torch.equal(lean.search(q, 10)[1], i1)
    changed = weight.clone()
    changed[0, 5] += 1.0
    with pytest.raises(MemoryIndexError, match="stale") as err:
        load_memory_index(tmp_path, changed, kind, dtype, **knobs)
    assert table_digest(weight) in str(err.value) and table_digest(changed) in str(err.value)


def test_meta_digest_mismatch_between_lean_table_and_faiss_index(tmp_path):
    weight = clustered(500, 16).t().contiguous()
    load_memory_index(tmp_path, weight, "ivf", "fp32", nlist=4)
    meta = tmp_path / "memory_index" / "ivf-fp32.json"
    data = json.loads(meta.read_text())
    data["source_digest"] = "sha256:other"
    meta.write_text(json.dumps(data))
    with pytest.raises(MemoryIndexError, match="sha256:other"):
        load_memory_index(tmp_path, None, "ivf", "fp32")


def test_unknown_kind_knob_and_dtype_are_refused(tmp_path):
    weight = torch.randn(8, 20)
    with pytest.raises(ValueError, match="kind"):
        load_memory_index(tmp_path, weight, "annoy")
    with pytest.raises(ValueError, match="dtype"):
        load_memory_index(tmp_path, weight, "exact", "fp8")
    with pytest.raises(ValueError, match="knob"):
        load_memory_index(tmp_path, weight, "exact", nprob=3)


def _eval(model: EDMemModel):
    batch = el_batch()
    with torch.no_grad():
        return model(**{k: batch[k] for k in EVAL_INPUTS})


def test_model_reads_through_an_attached_index_only_in_eval_mode(monkeypatch):
    torch.manual_seed(0)
    model = EDMemModel(tiny_config()).eval()
    ref = _eval(model)
    index = ExactIndex(DenseRows(model.EntityEmbedding.weight.detach(), columns=True))
    calls = []
    search = index.search
    monkeypatch.setattr(index, "search", lambda q, k: calls.append(q.shape[0]) or search(q, k))
    attach_memory_index(model, index)
    out = _eval(model)
    assert calls == [3, 5, 2]                      # encoder, decoder, head reads
    for a, b in zip(ref.topk_entity, out.topk_entity):
        assert torch.equal(a, b)
    assert torch.allclose(ref.decoder_last_hidden_state, out.decoder_last_hidden_state, atol=1e-5)
    calls.clear()
    model.train()
    batch = el_batch()
    model(**batch).loss.backward()                 # training: exact full softmax, never the index
    assert calls == []
    assert model.EntityEmbedding.weight.grad is not None


def test_int8_index_with_the_float_table_dropped(tmp_path):
    torch.manual_seed(0)
    model = EDMemModel(tiny_config()).eval()
    ref = _eval(model)
    index = load_memory_index(tmp_path, model.EntityEmbedding.weight, "exact", "int8")
    attach_memory_index(model, index, drop_table=True)
    assert model.EntityEmbedding.weight.device.type == "meta"
    out = _eval(model)
    assert torch.equal(out.topk_entity[2][:, 0], ref.topk_entity[2][:, 0])
    assert out.topk_entity[2].shape == (2, K)
    with pytest.raises(MemoryIndexError, match="does not fit"):
        attach_memory_index(EDMemModel(tiny_config(entity_vocab_size=60)), index)
