"""The self-describing model directory: everything needed to answer a question, in one folder.

Layout (format ``edmem-model-dir``, version :data:`FORMAT_VERSION`; docs/linking.md)::

    edmem_model.json     format, version, name, encoding options, entity count, edmem version
    config.json          the full EDMemConfig (``AutoModel.from_pretrained(DIR)`` reads it)
    model.safetensors    weights, canonical keys (tied aliases dropped)
    tokenizer files      vocab.json, merges.txt, tokenizer.json, tokenizer_config.json, ... (markers added)
    entities.jsonl       {"id": int, "name": str, "type": str | null}, one per entity, id order
    entity_rows.json     compact memory: id <-> row (absent for a full, identity memory)
    aliases.jsonl        {"id": int, "aliases": [str, ...]} (optional; mention detection)
    answer_types.json    answer-type prior (optional; edmem.inference.answer_types)
    fact_overrides.json  facts stated to `edmem memory add/edit` (optional; edmem.inference.fact_overrides)

Written by training (``run_qa --do_train`` writes ``<output_dir>/model``), ``edmem demo``
(``runs/demo/model``) and ``edmem convert``; read by :class:`edmem.inference.linker.EntityLinker`
and ``edmem predict --model``. Saving builds the folder beside the target and renames it into
place, so a reader never sees half a directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from edmem.errors import CheckpointError, DataError
from edmem.inference.answer_types import AnswerTypePrior, load_answer_types
from edmem.inference.fact_overrides import FactOverrides, load_fact_overrides
from edmem.inference.textio import iter_json_objects

FORMAT = "edmem-model-dir"
FORMAT_VERSION = 1
METADATA = "edmem_model.json"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ENTITIES = "entities.jsonl"
ALIASES = "aliases.jsonl"
ROWS = "entity_rows.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
REQUIRED = (METADATA, CONFIG, WEIGHTS, ENTITIES, *TOKENIZER_FILES)


class ModelDirError(CheckpointError):
    """A model directory that cannot be used (missing files, another format version, bad content)."""


@dataclass
class EntityTable:
    """id -> name and id -> type of the model's entities (types may be unknown: None)."""

    names: dict[int, str]
    types: dict[int, str | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self.names

    def get(self, entity_id: int, default: str | None = None) -> str | None:
        """The name (the ``NameTable`` protocol of ``edmem.inference.writer``)."""
        return self.names.get(int(entity_id), default)

    def type_of(self, entity_id: int) -> str | None:
        return self.types.get(int(entity_id))

    def ids(self) -> Iterable[int]:
        return iter(self.names)


@dataclass
class ModelDir:
    """A loaded model directory. ``model`` is in eval mode on the requested device."""

    path: Path
    metadata: dict[str, Any]
    config: Any                       # EDMemConfig
    model: Any                        # EDMemModel
    tokenizer: Any
    entities: EntityTable
    rows: Any                         # EntityRows
    aliases: dict[int, list[str]]
    encoding: Any                     # ELEncodingOptions
    answer_types: AnswerTypePrior | None = None   # reranks the EL head's top K when present
    fact_overrides: FactOverrides | None = None   # applied after the rerank when present

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or self.path.name)


# ---------------------------------------------------------------------------- small readers/writers
def read_entities(path: str | Path) -> EntityTable:
    """``entities.jsonl`` -> :class:`EntityTable` (file/line/field named on bad input)."""
    names: dict[int, str] = {}
    types: dict[int, str | None] = {}
    for line, obj in iter_json_objects(path):
        entity_id, name = obj.get("id"), obj.get("name")
        if not isinstance(entity_id, int) or isinstance(entity_id, bool):
            raise DataError(f"expected an integer id, got {entity_id!r:.60}", path, line, "id")
        if not isinstance(name, str):
            raise DataError(f"expected a string name, got {name!r:.60}", path, line, "name")
        if entity_id in names:
            raise DataError(f"entity id {entity_id} appears twice", path, line, "id")
        names[entity_id] = name
        kind = obj.get("type")
        if kind is not None:
            types[entity_id] = str(kind)
    return EntityTable(names, types)


def entities_lines(entities: EntityTable) -> Iterable[str]:
    for entity_id in sorted(entities.names):
        yield json.dumps({"id": entity_id, "name": entities.names[entity_id],
                          "type": entities.types.get(entity_id)}, ensure_ascii=False) + "\n"


def read_aliases(path: str | Path, known: Any | None = None) -> dict[int, list[str]]:
    """An alias file (``{"id": int, "aliases": [str]}`` per line) -> {id: aliases}.

    ``known`` (a container of entity ids): an id not in it is an error naming the line, since an
    alias that can never be linked is a mistake in the file, not something to drop silently.
    Several lines for one id add up.
    """
    aliases: dict[int, list[str]] = {}
    for line, obj in iter_json_objects(path):
        entity_id, values = obj.get("id"), obj.get("aliases")
        if not isinstance(entity_id, int) or isinstance(entity_id, bool):
            raise DataError(f"expected an integer id, got {entity_id!r:.60}", path, line, "id")
        if known is not None and entity_id not in known:
            raise DataError(f"unknown entity id {entity_id} (not in the model's entity vocabulary)",
                            path, line, "id")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataError(f"expected a list of strings, got {values!r:.60}", path, line, "aliases")
        bucket = aliases.setdefault(entity_id, [])
        bucket.extend(v for v in values if v not in bucket)
    return aliases


def aliases_lines(aliases: Mapping[int, Iterable[str]]) -> Iterable[str]:
    for entity_id in sorted(aliases):
        values = list(dict.fromkeys(aliases[entity_id]))
        if values:
            yield json.dumps({"id": int(entity_id), "aliases": values}, ensure_ascii=False) + "\n"


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    """Write text lines atomically (temp file + rename)."""
    from edmem.runtime.atomic import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(lines)
    return atomic_write(path, write)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """``edmem_model.json`` after checking that every required file is there and the format and
    version are ones this edmem reads (one :class:`ModelDirError` naming what is wrong)."""
    root = Path(path)
    if not root.is_dir():
        raise ModelDirError(f"{root}: model directory not found (expected a folder written by "
                            "training, `edmem demo` or `edmem convert`)")
    missing = [name for name in REQUIRED if not (root / name).is_file()]
    if METADATA in missing:
        hint = (" (this looks like a training output folder: use its 'model' subfolder, or build "
                "one with `edmem convert`)" if (root / "pytorch_model.bin").is_file() else "")
        raise ModelDirError(f"{root}: not an edmem model directory, {METADATA} is missing{hint}")
    try:
        metadata = json.loads((root / METADATA).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{root / METADATA}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelDirError(f"{root / METADATA}: not an {FORMAT} file "
                            f"(format {metadata.get('format') if isinstance(metadata, dict) else None!r})")
    version = metadata.get("version")
    if version != FORMAT_VERSION:
        raise ModelDirError(f"{root}: model directory format version {version!r}, this edmem reads "
                            f"version {FORMAT_VERSION} (re-export it with the edmem that reads it, "
                            "or rebuild it with `edmem convert`)")
    if missing:
        raise ModelDirError(f"{root}: incomplete model directory, missing {', '.join(missing)}")
    return metadata


# ---------------------------------------------------------------------------- save
def save_model_dir(path: str | Path, *, model: Any, tokenizer: Any, entities: EntityTable,
                   rows: Any, encoding: Any, aliases: Mapping[int, Iterable[str]] | None = None,
                   name: str | None = None, extra: Mapping[str, Any] | None = None,
                   answer_types: AnswerTypePrior | None = None,
                   fact_overrides: FactOverrides | None = None) -> Path:
    """Write a complete model directory at ``path`` (replacing one that is there).

    ``model``: an ``EDMemModel``; ``tokenizer``: the one it was trained with (markers added);
    ``entities``: id -> name/type for every entity the memory can return; ``rows``: its
    ``EntityRows``; ``encoding``: the ``ELEncodingOptions`` of training; ``aliases``: optional
    {id: [alias, ...]} for mention detection; ``extra``: more metadata (e.g. where it came from);
    ``answer_types``: an optional answer-type prior (``edmem.inference.answer_types``);
    ``fact_overrides``: optional fact overrides (``edmem.inference.fact_overrides``; none are
    written when empty).
    """
    from safetensors.torch import save_file

    from edmem import __version__
    from edmem.modeling.model import TIED_GROUPS

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        alias_keys = {a for group in TIED_GROUPS.values() for a in group}
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
                 if k not in alias_keys}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(model.config.to_json_string(), encoding="utf-8")
        tokenizer.save_pretrained(str(tmp))
        if rows.compact:
            rows.save(tmp)
        write_lines(tmp / ENTITIES, entities_lines(entities))
        if aliases:
            write_lines(tmp / ALIASES, aliases_lines(aliases))
        if answer_types is not None:
            answer_types.save(tmp)
        if fact_overrides:
            fact_overrides.save(tmp)
        metadata = {"format": FORMAT, "version": FORMAT_VERSION, "name": name or target.name,
                    "edmem_version": __version__, "num_entities": len(entities),
                    "memory_rows": rows.num_rows, "encoding": _encoding_dict(encoding),
                    **dict(extra or {})}
        (tmp / METADATA).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _encoding_dict(encoding: Any) -> dict[str, Any]:
    from dataclasses import asdict
    return asdict(encoding)


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished ``new`` folder to ``target``; an older ``target`` is removed only after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------- load
def load_model_dir(path: str | Path, device: str = "cpu", *, alias_file: str | Path | None = None,
                   load_model: bool = True) -> ModelDir:
    """Load a model directory (checked by :func:`read_metadata` first, so a wrong folder fails
    before anything heavy is read). ``alias_file`` adds aliases to the directory's own (ids must
    be known entities). ``load_model=False`` skips the weights (``model`` is None)."""
    from edmem.data.entity_rows import EntityRows

    root = Path(path)
    metadata = read_metadata(root)
    entities = read_entities(root / ENTITIES)
    aliases = read_aliases(root / ALIASES, entities) if (root / ALIASES).is_file() else {}
    if alias_file is not None:
        for entity_id, values in read_aliases(alias_file, entities).items():
            bucket = aliases.setdefault(entity_id, [])
            bucket.extend(v for v in values if v not in bucket)
    config = _load_config(root)
    rows = EntityRows.load(root) or EntityRows.identity(config.entity_vocab_size)
    if rows.num_rows != config.entity_vocab_size:
        raise ModelDirError(f"{root}: {ROWS} maps {rows.num_rows} memory rows but config.json has "
                            f"entity_vocab_size={config.entity_vocab_size}")
    tokenizer = _load_tokenizer(root, config)
    encoding = _encoding_options(metadata.get("encoding", {}), root / METADATA)
    model = _load_model(root, config, device) if load_model else None
    return ModelDir(root, metadata, config, model, tokenizer, entities, rows, aliases, encoding,
                    load_answer_types(root), load_fact_overrides(root))


def _encoding_options(fields: Any, path: Path) -> Any:
    """The ``encoding`` entry of edmem_model.json, type-checked (untrusted input: a wrong type
    would otherwise fail deep inside question encoding, docs/reliability.md)."""
    from edmem.data.examples import ELEncodingOptions

    if not isinstance(fields, dict):
        raise ModelDirError(f"{path}: bad 'encoding' (expected an object, got {type(fields).__name__})")
    try:
        encoding = ELEncodingOptions(**fields)
    except TypeError as exc:
        raise ModelDirError(f"{path}: bad 'encoding' ({exc})") from None
    length = encoding.max_input_length
    if not isinstance(length, int) or isinstance(length, bool) or length < 2:
        raise ModelDirError(f"{path}: bad 'encoding' (max_input_length must be an integer >= 2, "
                            f"got {length!r:.40})")
    for name in ("do_cased", "add_another_bos", "prepend_question_in_decoder_input"):
        if not isinstance(getattr(encoding, name), bool):
            raise ModelDirError(f"{path}: bad 'encoding' ({name} must be true or false, "
                                f"got {getattr(encoding, name)!r:.40})")
    return encoding


def _load_config(root: Path) -> Any:
    from edmem.config import EDMemConfig, check_bart_fields
    try:
        config = EDMemConfig.from_json_file(str(root / CONFIG))
        check_bart_fields(config.to_dict())  # untrusted: refuse fields that crash the forward pass
        return config
    except (ValueError, TypeError, OSError) as exc:
        raise ModelDirError(f"{root / CONFIG}: not a valid edmem config ({exc})") from None


def _load_tokenizer(root: Path, config: Any) -> Any:
    from edmem.data.tokenization import load_tokenizer, marker_ids
    try:
        tokenizer = load_tokenizer(root)
        start, end = marker_ids(tokenizer)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelDirError(f"{root}: cannot load the tokenizer ({exc})") from None
    if (start, end) != (config.entity_start_token_id, config.entity_end_token_id) \
            or len(tokenizer) != config.vocab_size:
        raise ModelDirError(f"{root}: the tokenizer ({len(tokenizer)} tokens, markers {start}/{end}) "
                            f"does not match config.json ({config.vocab_size} tokens, markers "
                            f"{config.entity_start_token_id}/{config.entity_end_token_id})")
    return tokenizer


def _load_model(root: Path, config: Any, device: str) -> Any:
    from edmem.modeling.checkpoints import load_original_state_dict
    from edmem.modeling.model import EDMemModel

    try:  # sizes too large to allocate (docs/reliability.md, out of scope) still fail in one line
        model = EDMemModel(config)
    except (ValueError, TypeError, RuntimeError, MemoryError, OverflowError) as exc:
        raise ModelDirError(f"{root / CONFIG}: cannot build a model from it "
                            f"({type(exc).__name__}: {str(exc)[:300]})") from None
    try:
        load_original_state_dict(model, root / WEIGHTS, strict=True)
    except CheckpointError as exc:
        raise ModelDirError(f"{root}: weights do not fit config.json ({exc})") from None
    return model.to(device).eval()
