"""Entity-annotated passages: streaming reader and a memory-mapped tokenisation cache.

Input format (the original Wikipedia pretraining files, one JSON object per line)::

    {"id": "12", "text": "Paris is the capital of France.",
     "hyperlinks": {"link_offset": [0, 24], "link_length": [5, 6], "link_target": [1234, 567]}}

Offsets/lengths are character positions in ``text``; targets are entity ids of the 1M vocabulary.

Why a cache: tokenising and aligning spans (docs/data.md) costs far more than training reads, and a
Wikipedia-sized corpus does not fit in memory. :func:`build_token_cache` streams the jsonl once and
appends every encoded passage to flat binary files (ids, entity links, row offsets); the result is
opened with ``numpy.memmap``, so a run touches only the pages it reads. The cache directory is keyed
by a hash of the file contents, the tokenizer and the encoding settings, and reused by later runs
with the same three. Entity links are stored as *original* ids: the mapping to memory rows (compact
memory) happens when items are built, so one cache serves every memory layout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edmem.data.formats import LoadReport, Mention, parse_mentions
from edmem.data.jsonio import iter_jsonl
from edmem.data.markers import AlignmentError
from edmem.errors import DataError

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_ID_DTYPE = np.int32
_OFFSET_DTYPE = np.int64


@dataclass(frozen=True)
class Passage:
    """One annotated passage; ``mentions`` are validated, sorted and disjoint (data layer rules)."""

    id: str
    text: str
    mentions: list[Mention]
    line: int


# (text, mentions) -> (input_ids, entity_link), both of equal length, wrapped in BOS ... EOS.
PassageEncoder = Callable[[str, Sequence[Mention]], tuple[Sequence[int], Sequence[int]]]


def parse_passage(obj: dict[str, Any], path: Path, line: int, report: LoadReport) -> Passage:
    """Validate one jsonl object with the data layer's span rules (errors name file/line/field).

    Entity ids are not checked against a vocabulary here, so one cache serves every memory size;
    ids outside the memory become NIL when items are built (see ``dataset.PretrainDataset``).
    """
    text = obj.get("text")
    if not isinstance(text, str):
        raise DataError("missing or non-string text", path, line, "text")
    links = obj.get("hyperlinks") or {}
    if not isinstance(links, dict):
        raise DataError("expected an object with link_offset/link_length/link_target", path, line, "hyperlinks")
    mentions = parse_mentions(links, text, path, line, None, report)
    return Passage(id=str(obj.get("id", line)), text=text, mentions=mentions, line=line)


def iter_passages(path: str | Path, report: LoadReport | None = None) -> Iterator[Passage]:
    """Stream passages from a jsonl file (constant memory); repairs are counted in ``report``."""
    path = Path(path)
    report = report if report is not None else LoadReport(str(path))
    for line, obj in iter_jsonl(path):
        yield parse_passage(obj, path, line, report)


# ------------------------------------------------------------------------------------------------
# cache key


def file_digest(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """Content hash (blake2b) of a file, streamed. Content, not mtime: copies share one cache."""
    digest = hashlib.blake2b(digest_size=16)
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of everything that decides how text becomes ids (vocab, merges, added tokens)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # fast tokenizer: the full serialised pipeline
        digest.update(backend.to_str().encode("utf-8"))
    else:
        digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode("utf-8"))
        ranks = getattr(tokenizer, "bpe_ranks", None)
        if ranks is not None:
            digest.update(repr(sorted(ranks.items(), key=lambda kv: kv[1])).encode("utf-8"))
    digest.update(repr(sorted(tokenizer.get_added_vocab().items())).encode("utf-8"))
    return digest.hexdigest()


def cache_key(source_digest: str, tokenizer_digest: str, settings: dict[str, Any]) -> str:
    payload = json.dumps({"version": CACHE_FORMAT_VERSION, "source": source_digest,
                          "tokenizer": tokenizer_digest, "settings": settings}, sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def default_cache_dir() -> Path:
    """``$EDMEM_CACHE_DIR`` or ``$XDG_CACHE_HOME/edmem/corpus`` (``~/.cache/edmem/corpus``)."""
    if os.environ.get("EDMEM_CACHE_DIR"):
        return Path(os.environ["EDMEM_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "edmem" / "corpus"


# ------------------------------------------------------------------------------------------------
# building and opening


class TokenCache:
    """A read-only, memory-mapped view of an encoded corpus. Picklable (re-opens lazily)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise DataError("not a token cache (meta.json missing)", self.directory)
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        if self.meta.get("version") != CACHE_FORMAT_VERSION:
            raise DataError(f"token cache version {self.meta.get('version')} != {CACHE_FORMAT_VERSION}", meta_path)
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _open(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None:
            num_tokens, num_rows = self.meta["num_tokens"], self.meta["num_passages"]

            def mm(name: str, dtype: Any, length: int) -> np.ndarray:
                if length == 0:
                    return np.zeros(0, dtype=dtype)
                return np.memmap(self.directory / name, dtype=dtype, mode="r", shape=(length,))

            self._arrays = (mm("input_ids.bin", _ID_DTYPE, num_tokens),
                            mm("entity_link.bin", _ID_DTYPE, num_tokens),
                            mm("offsets.bin", _OFFSET_DTYPE, num_rows + 1))
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:  # memmaps are re-opened in worker processes
        return {"directory": self.directory, "meta": self.meta, "_arrays": None}

    def __len__(self) -> int:
        return int(self.meta["num_passages"])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, entity_link)`` of passage ``index`` as int64 arrays (original entity ids)."""
        ids, links, offsets = self._open()
        start, end = int(offsets[index]), int(offsets[index + 1])
        return np.asarray(ids[start:end], dtype=np.int64), np.asarray(links[start:end], dtype=np.int64)

    @property
    def report(self) -> dict[str, Any]:
        return self.meta.get("report", {})


def build_token_cache(source: str | Path, encode: PassageEncoder, directory: str | Path,
                      settings: dict[str, Any] | None = None, progress: bool = False) -> TokenCache:
    """Encode every passage of ``source`` into ``directory`` (written atomically) and open it.

    Passages whose spans cannot be aligned to tokens (``AlignmentError`` from ``encode``) are skipped
    and counted by reason in the cache's report; structural errors (bad JSON, wrong field types)
    stop with a :class:`DataError` naming the line, because they mean the file is not this format.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    report = LoadReport(str(source))
    stats = {"passages": 0, "mentions": 0, "marked_mentions": 0}
    position = 0
    try:
        with (staging / "input_ids.bin").open("wb") as ids_out, \
                (staging / "entity_link.bin").open("wb") as links_out, \
                (staging / "offsets.bin").open("wb") as offsets_out:
            offsets_out.write(np.asarray([0], dtype=_OFFSET_DTYPE).tobytes())
            passages: Iterator[Passage] = iter_passages(source, report)
            if progress:
                from tqdm.auto import tqdm
                passages = tqdm(passages, desc=f"tokenising {Path(source).name}", unit=" passages",
                                disable=None)  # no bar when stderr is not a terminal
            for passage in passages:
                stats["passages"] += 1
                stats["mentions"] += len(passage.mentions)
                try:
                    input_ids, links = encode(passage.text, passage.mentions)
                except AlignmentError as exc:  # the span aligner rejects this passage's spans
                    report.skip("unalignable_spans", passage.line)
                    logger.debug("%s line %d: %s", source, passage.line, exc)
                    continue
                if len(input_ids) != len(links):
                    raise DataError(f"encoder returned {len(input_ids)} ids but {len(links)} links",
                                    source, passage.line)
                ids_arr = np.asarray(input_ids, dtype=_ID_DTYPE)
                links_arr = np.asarray(links, dtype=_ID_DTYPE)
                ids_out.write(ids_arr.tobytes())
                links_out.write(links_arr.tobytes())
                position += len(ids_arr)
                offsets_out.write(np.asarray([position], dtype=_OFFSET_DTYPE).tobytes())
                report.kept += 1
                stats["marked_mentions"] += int(np.count_nonzero(links_arr))
        meta = {"version": CACHE_FORMAT_VERSION, "source": str(source), "num_passages": report.kept,
                "num_tokens": position, "settings": settings or {}, "stats": stats,
                "report": {"summary": report.summary(), "skipped": report.skipped,
                           "repaired": report.repaired, "lines": report.lines}}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        if directory.exists():  # another process finished first: keep its copy
            shutil.rmtree(staging)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.log(logger)
    logger.info("Tokenised %s -> %s: %d passages, %d tokens, %d/%d mentions marked (after truncation)",
                source, directory, report.kept, position, stats["marked_mentions"], stats["mentions"])
    return TokenCache(directory)


def open_or_build_cache(source: str | Path, encode: PassageEncoder, tokenizer: Any,
                        settings: dict[str, Any], cache_dir: str | Path | None = None,
                        progress: bool = False) -> TokenCache:
    """Reuse the cache for (file contents, tokenizer, settings) if present, else build it.

    Under DDP call this on rank 0 first, then (after a barrier) on the other ranks, which find it.
    """
    source = Path(source)
    if not source.is_file():
        raise DataError("file not found", source)
    key = cache_key(file_digest(source), tokenizer_fingerprint(tokenizer), settings)
    directory = Path(cache_dir or default_cache_dir()) / f"{source.stem}-{key}"
    if (directory / "meta.json").is_file():
        cache = TokenCache(directory)
        logger.info("Reusing token cache %s (%d passages, %d tokens)", directory, len(cache),
                    cache.meta["num_tokens"])
        return cache
    return build_token_cache(source, encode, directory, settings=settings, progress=progress)
