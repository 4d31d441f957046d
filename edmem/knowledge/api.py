"""``edmem memory add / edit / remove`` as Python functions (docs/knowledge.md).

Each reads a model directory (``edmem.inference.model_dir``), changes rows of its entity table,
and writes a complete new model directory (weights, config, tokenizer, entity vocabulary, aliases,
id <-> row mapping) plus ``memory_log.jsonl``: one JSON object per change ever applied to this
model (the input's history is carried over). The input directory is only read.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from edmem.constants import EDIT_REFIT_CHOICES, ROW_INIT_METHODS
from edmem.errors import DataError, EDMemError
from edmem.inference.fact_overrides import FactOverrides
from edmem.knowledge.fit import FitSettings, edit_defaults, fit_rows
from edmem.knowledge.inputs import NewEntity, read_new_entities, read_passages
from edmem.knowledge.table import append_rows, hidden_rows, hide_rows, initialise_rows

logger = logging.getLogger(__name__)

LOG_FILE = "memory_log.jsonl"


class OutputError(EDMemError):
    """The output directory cannot be written (exists, is the input, no permission)."""


# ---------------------------------------------------------------------------- output directory
def check_output(model_dir: str | Path, output: str | Path, overwrite: bool) -> Path:
    """Refuse an output that is the input, exists (without ``overwrite``), is not a model
    directory (even with ``overwrite``: we only replace what we would write), or cannot be
    written. Checked before any work is done."""
    from edmem.inference.model_dir import METADATA

    src, out = Path(model_dir).resolve(), Path(output).resolve()
    if out == src:
        raise OutputError(f"--output {output} is the input model directory; the input is never "
                          "modified, choose another folder")
    if out.exists():
        if not overwrite:
            raise OutputError(f"--output {output} exists; pass --overwrite to replace it")
        if not out.is_dir() or (any(out.iterdir()) and not (out / METADATA).is_file()):
            raise OutputError(f"--output {output} exists and is not a model directory; "
                              "refusing to replace it")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--output {output}: no write access to {parent}")
    return out


def _load(model_dir: str | Path) -> Any:
    from edmem.inference.model_dir import load_model_dir

    loaded = load_model_dir(model_dir)
    loaded.model.float()
    return loaded


def _history(model_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(model_dir) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _save(loaded: Any, output: Path, record: dict[str, Any], history: list[dict[str, Any]]) -> Path:
    from edmem.inference.model_dir import save_model_dir
    from edmem.runtime.atomic import atomic_write_text

    extra = {k: v for k, v in loaded.metadata.items()
             if k not in {"format", "version", "name", "edmem_version", "num_entities", "memory_rows", "encoding"}}
    extra["hidden_entities"] = sorted(loaded.rows.row_to_id(r) for r in hidden_rows(loaded.model.config))
    extra["memory_changes"] = len(history) + 1
    save_model_dir(output, model=loaded.model, tokenizer=loaded.tokenizer, entities=loaded.entities,
                   rows=loaded.rows, encoding=loaded.encoding, aliases=loaded.aliases,
                   name=output.name, extra=extra, answer_types=loaded.answer_types,
                   fact_overrides=loaded.fact_overrides)
    atomic_write_text(output / LOG_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                 for r in [*history, record]))
    return output


def _settings(settings: FitSettings | None, loaded: Any, lowercase: bool | None,
              default: FitSettings | None = None) -> FitSettings:
    s = FitSettings(**asdict(settings if settings is not None else (default or FitSettings())))
    s.max_length = min(s.max_length, int(loaded.config.max_position_embeddings))
    if lowercase is not None:
        s.lowercase = lowercase
    else:  # read the passages the way the model reads questions
        s.lowercase = not bool(getattr(loaded.encoding, "do_cased", False))
    return s


def _names(loaded: Any, extra: Iterable[NewEntity] = ()) -> dict[int, list[str]]:
    names = {i: [n, *loaded.aliases.get(i, [])] for i, n in loaded.entities.names.items()}
    for e in extra:
        names[e.id] = e.names()
    return names


def _add_overrides(loaded: Any, text: Any, subjects: set[int] | None = None) -> dict[str, Any]:
    """Fact overrides from the passages' statements (``edmem.inference.fact_overrides``): each
    passage's subject is its first mention (with ``subjects``: the first of those it names),
    every other linked entity an object keyed by its type. Returns the record's entry."""
    if loaded.fact_overrides is None:
        loaded.fact_overrides = FactOverrides()
    update = loaded.fact_overrides.add_statements(
        text.statements(), loaded.entities.type_of, subjects.__contains__ if subjects is not None else None)
    if update.untyped_objects:
        logger.warning("%d statement object(s) have no type and give no fact override",
                       update.untyped_objects)
    if update.conflicts:
        logger.warning("%d statement object(s) name another entity of a type already stated for the "
                       "same subject (first in a passage, the later passage wins)", update.conflicts)
    return {**update.to_json(), "total": len(loaded.fact_overrides),
            "entries": [asdict(e) for e in update.added]}


def _row_norms(model: Any, rows: Sequence[int]) -> list[float]:
    table = model.EntityEmbedding.weight.detach()
    return [float(table[:, r].norm()) for r in rows]


# ---------------------------------------------------------------------------- add
def add_entities(model_dir: str | Path, entities: str | Path | Sequence[NewEntity | Mapping[str, Any]],
                 passages: str | Path, output: str | Path, *, init: str = "name",
                 settings: FitSettings | None = None, lowercase: bool | None = None,
                 overwrite: bool = False, overrides: bool = True) -> dict[str, Any]:
    """Append one row per new entity, initialise it (``init``: ``name`` or ``type_mean``), fit the
    new rows only on ``passages`` and write the model to ``output``. With ``overrides``, the
    passages' statements about the new entities also become fact overrides
    (``edmem.inference.fact_overrides``). Returns the change record."""
    if init not in ROW_INIT_METHODS:
        raise EDMemError(f"--init {init!r}: expected one of {', '.join(ROW_INIT_METHODS)}")
    out = check_output(model_dir, output, overwrite)
    started = time.perf_counter()
    loaded = _load(model_dir)
    new = _new_entities(entities, loaded)
    known = set(loaded.entities.names) | {e.id for e in new}
    text = read_passages(passages, known, _names(loaded, new))
    loaded.rows, new_rows = append_rows(loaded.model, loaded.rows, [e.id for e in new])
    for e in new:
        loaded.entities.names[e.id] = e.name
        if e.type is not None:
            loaded.entities.types[e.id] = e.type
        loaded.aliases[e.id] = [a for a in e.names() if a != e.name] or loaded.aliases.get(e.id, [])
    s = _settings(settings, loaded, lowercase)
    row_types = {loaded.rows.id_to_row(i): loaded.entities.types.get(i) for i in loaded.entities.names
                 if i in loaded.rows}
    initialise_rows(loaded.model, loaded.tokenizer, new_rows, method=init, names=[e.names() for e in new],
                    types=[e.type for e in new], row_types=row_types,
                    bos_prefix=bool(getattr(loaded.encoding, "add_another_bos", True)), max_length=s.max_length)
    fit = fit_rows(loaded.model, loaded.tokenizer, loaded.rows, text.passages, new_rows, s)
    record = {"operation": "add", "entities": [{"id": e.id, "name": e.name, "row": r}
                                              for e, r in zip(new, new_rows)],
              "init": init, "passages": text.summary(), "fit": fit.to_json(), "settings": asdict(s),
              "fact_overrides": _add_overrides(loaded, text, {e.id for e in new}) if overrides else None,
              "norms_after": _row_norms(loaded.model, new_rows), "from": str(model_dir),
              "seconds": round(time.perf_counter() - started, 3)}
    _save(loaded, out, record, _history(model_dir))
    return record


def _new_entities(entities: Any, loaded: Any) -> list[NewEntity]:
    exists = lambda i: i in loaded.entities.names or i in loaded.rows  # noqa: E731
    if isinstance(entities, (str, Path)):
        return read_new_entities(entities, exists)
    out = []
    for k, e in enumerate(entities):
        e = e if isinstance(e, NewEntity) else NewEntity(int(e["id"]), e["name"], tuple(e.get("aliases", ())),
                                                          e.get("type"))
        if exists(e.id):
            raise DataError(f"entity id {e.id} is already in the model", None, None, f"entities[{k}].id")
        out.append(e)
    if not out:
        raise DataError("no entities to add")
    if len({e.id for e in out}) != len(out):
        raise DataError("an entity id appears twice among the new entities")
    return out


# ---------------------------------------------------------------------------- edit
def edit_entities(model_dir: str | Path, passages: str | Path, output: str | Path, *,
                  ids: Sequence[int] | None = None, refit: str = EDIT_REFIT_CHOICES[0], settings: FitSettings | None = None,
                  lowercase: bool | None = None, overwrite: bool = False,
                  overrides: bool = True) -> dict[str, Any]:
    """Re-fit rows on ``passages`` so the model states what they say: ``ids``' rows, else
    (``refit``) every linked entity, only each passage's subject (its first mention), or none;
    with ``overrides`` the statements also become fact overrides (on the demo an answer does
    not come from its subject's row: docs/knowledge.md). Records rows, norms before/after, the
    overrides set and the passages' hash."""
    if refit not in EDIT_REFIT_CHOICES:
        raise EDMemError(f"--refit {refit!r}: expected one of {', '.join(EDIT_REFIT_CHOICES)}")
    out = check_output(model_dir, output, overwrite)
    started = time.perf_counter()
    loaded = _load(model_dir)
    text = read_passages(passages, set(loaded.entities.names), _names(loaded))
    hidden = set(hidden_rows(loaded.model.config))
    if ids is None:
        candidates = {"subjects": text.subject_ids, "linked": text.linked_ids}.get(refit, list)()
        chosen = [i for i in candidates if loaded.rows.id_to_row(i) not in hidden]
    else:
        unknown = [i for i in ids if i not in loaded.entities.names or i not in loaded.rows]
        if unknown:
            raise DataError(f"--rows: unknown entity id(s) {unknown[:10]} (not in the model)")
        chosen = list(dict.fromkeys(int(i) for i in ids))
    if not chosen and (ids is not None or refit != "none"):
        raise DataError("the passages link no entity, so there is no row to edit (give --rows)", text.path)
    if not chosen and not overrides:
        raise DataError("--refit none without fact overrides changes nothing", text.path)
    rows = [loaded.rows.id_to_row(i) for i in chosen]
    before = _row_norms(loaded.model, rows)
    table = loaded.model.EntityEmbedding.weight.detach()
    start_values = table[:, rows].clone()
    s = _settings(settings, loaded, lowercase, edit_defaults())
    fit = fit_rows(loaded.model, loaded.tokenizer, loaded.rows, text.passages, rows, s) if rows else None
    after = _row_norms(loaded.model, rows)
    moved = (loaded.model.EntityEmbedding.weight.detach()[:, rows] - start_values).norm(dim=0).tolist()
    update = _add_overrides(loaded, text) if overrides else None
    if overrides and not update["added"] and not rows:
        raise DataError("the passages give no fact override (no passage links two typed entities) "
                        "and --refit none re-fits no row: nothing to change", text.path)
    record = {"operation": "edit", "refit": "ids" if ids is not None else refit,
              "rows": [{"id": i, "name": loaded.entities.names.get(i), "row": r, "norm_before": b,
                        "norm_after": a, "change_norm": m}
                       for i, r, b, a, m in zip(chosen, rows, before, after, moved)],
              "passages": text.summary(), "fit": fit.to_json() if fit is not None else None,
              "settings": asdict(s), "fact_overrides": update,
              "from": str(model_dir), "seconds": round(time.perf_counter() - started, 3)}
    _save(loaded, out, record, _history(model_dir))
    return record


# ---------------------------------------------------------------------------- remove
def remove_entities(model_dir: str | Path, ids: Sequence[int], output: str | Path, *,
                    overwrite: bool = False) -> dict[str, Any]:
    """Hide ``ids`` from every read (the entity mask) without renumbering; their aliases leave the
    alias table (mention detection would only find mentions that can no longer be linked)."""
    out = check_output(model_dir, output, overwrite)
    loaded = _load(model_dir)
    if not ids:
        raise DataError("--ids: give at least one entity id")
    unknown = [i for i in ids if i not in loaded.entities.names or i not in loaded.rows]
    if unknown:
        raise DataError(f"--ids: unknown entity id(s) {unknown[:10]} (not in the model)")
    rows = [loaded.rows.id_to_row(i) for i in ids]
    added = hide_rows(loaded.model.config, rows)
    for i in ids:
        loaded.aliases.pop(int(i), None)
    dropped = loaded.fact_overrides.drop_entities(ids) if loaded.fact_overrides is not None else 0
    record = {"operation": "remove", "ids": [int(i) for i in ids], "rows": rows,
              "newly_hidden_rows": added, "fact_overrides_dropped": dropped, "from": str(model_dir)}
    if len(added) < len(rows):
        logger.warning("%d of the %d entities were already hidden", len(rows) - len(added), len(rows))
    _save(loaded, out, record, _history(model_dir))
    return record
