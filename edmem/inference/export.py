"""Build a model directory (``edmem.inference.model_dir``) from a checkpoint and its ingredients.

Used by training (``<output_dir>/model`` after the last evaluation), by ``edmem demo`` and by
``edmem convert`` (an original checkpoint + its flags). The entity vocabulary keeps only the
entities the memory has a row for (the model can never return the others).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from edmem.data.jsonio import read_json
from edmem.errors import CheckpointError, DataError
from edmem.inference.model_dir import EntityTable, read_aliases, save_model_dir


def load_entity_table(path: str | Path, rows: Any) -> EntityTable:
    """Names (and ``type`` when the file has it) of ``entid2entityitemid_*.json`` or
    ``entity_*.json`` for the ids that have a memory row."""
    from edmem.data.entity_vocab import load_entity_names

    names = load_entity_names(path)
    kept = {entity_id: name for entity_id, name in names.items() if entity_id in rows}
    return EntityTable(kept, {i: t for i, t in load_entity_types(path).items() if i in kept})


def load_entity_types(path: str | Path) -> dict[int, str]:
    """``{"<id>": {"type": ...}}`` -> {id: type} (empty for files without types or lists)."""
    with Path(path).open("r", encoding="utf-8") as handle:
        if handle.read(64).lstrip().startswith("["):
            return {}

    def hook(pairs: list[tuple[str, Any]]) -> Any:
        for key, value in pairs:
            if key == "entity":  # an inner {"entity": ..., "type": ...} object -> its type
                return next((v for k, v in pairs if k == "type" and isinstance(v, str)), None)
        return pairs

    outer = read_json(path, object_pairs_hook=hook)
    if not isinstance(outer, list):
        return {}
    return {int(key): value for key, value in outer if isinstance(value, str)}


def export_model_dir(checkpoint: str | Path, target: str | Path, *, config: Any, tokenizer: Any,
                     id2entity_file: str | Path, rows: Any, encoding: Any,
                     alias_file: str | Path | None = None, name: str | None = None,
                     extra: Mapping[str, Any] | None = None, answer_types: Any = None) -> Path:
    """Load the weights of ``checkpoint`` (a folder with pytorch_model.bin / model.safetensors, or
    a file) into a model built from ``config`` and write the model directory ``target``."""
    from edmem.modeling.checkpoints import load_original_state_dict
    from edmem.modeling.model import EDMemModel

    entities = load_entity_table(id2entity_file, rows)
    if not len(entities):
        raise DataError("no entity of this vocabulary has a row in the memory", id2entity_file)
    aliases = read_aliases(alias_file, entities) if alias_file is not None else None
    model = EDMemModel(config)
    try:
        load_original_state_dict(model, checkpoint, strict=True)
    except CheckpointError as exc:
        raise CheckpointError(f"{checkpoint}: {exc} (do the model flags match the checkpoint?)") from None
    info = {"source_checkpoint": str(Path(checkpoint).resolve()),
            "id2entity_file": str(id2entity_file), **dict(extra or {})}
    return save_model_dir(target, model=model.eval(), tokenizer=tokenizer, entities=entities,
                          rows=rows, encoding=encoding, aliases=aliases, name=name, extra=info,
                          answer_types=answer_types)


def write_alias_file(path: str | Path, aliases: Mapping[int, list[str]]) -> Path:
    """An alias JSONL file (``{"id", "aliases"}`` per line), atomically."""
    from edmem.inference.model_dir import aliases_lines, write_lines
    return write_lines(Path(path), aliases_lines(aliases))

