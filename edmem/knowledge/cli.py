"""``edmem memory add | edit | remove``: change what the entity memory knows without retraining.

Bad input ends with one ``edmem memory <cmd>: error: ...`` line and exit status 1 (no traceback).
See docs/knowledge.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

from edmem.constants import EDIT_REFIT_CHOICES, ROW_INIT_METHODS

PROG = "edmem memory"


def _ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected entity ids (integers), got {text!r}") from None


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def _fit_flags(parser: argparse.ArgumentParser, d: Any) -> None:
    g = parser.add_argument_group("fitting (only the chosen rows move; docs/knowledge.md)")
    g.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (default %(default)s)")
    g.add_argument("--batch_size", type=int, default=d.batch_size, help="passages per step (default %(default)s)")
    g.add_argument("--learning_rate", type=float, default=d.learning_rate, help="Adam lr (default %(default)s)")
    g.add_argument("--anchor", type=float, default=d.anchor,
                   help="weight of ||row - row_before||^2: keeps edited rows near their old facts "
                        "(default %(default)s)")
    g.add_argument("--norm_cap", type=float, default=d.norm_cap,
                   help="a fitted row's norm stays <= this x max(its norm before, the mean row norm); "
                        "0 = no cap (default %(default)s)")
    g.add_argument("--mlm_probability", type=_probability, default=d.mlm_probability, help="(default %(default)s)")
    g.add_argument("--ssm_probability", type=_probability, default=d.ssm_probability, help="(default %(default)s)")
    g.add_argument("--mention_deletion_probability", type=_probability, default=d.mention_deletion_probability,
                   help="share of passages (with >= 2 mentions) whose one mention is removed from the "
                        "encoder input and must be named by the decoder from the other mentions' rows, "
                        "the route a question's answer takes (docs/knowledge.md; default %(default)s)")
    g.add_argument("--delete_fitted_mentions", action=argparse.BooleanOptionalAction,
                   default=d.delete_fitted_mentions,
                   help="mention deletion may also remove mentions of the rows being fitted (otherwise "
                        "only other mentions: the fitted rows are the cue) (default %(default)s)")
    g.add_argument("--max_length", type=int, default=d.max_length, help="tokens per passage (default %(default)s)")
    g.add_argument("--cased", dest="lowercase", action="store_false", default=None,
                   help="keep the passages' case (default: lowercase them when the model reads "
                        "lowercased questions, i.e. its do_cased is false)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--no_progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=(
        "Change the entity memory of a model directory without retraining: add entities, edit "
        "facts, hide entities. The input directory is never modified; the result is a complete "
        "new model directory."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="{add,edit,remove}")

    add = sub.add_parser("add", help="append rows for new entities, fit them on their passages, keep "
                                     "their statements as fact overrides",
                         description="Append one memory row per new entity, initialise it, and train "
                                     "only the new rows on the passages (MLM + salient spans + EL).")
    add.add_argument("--model", required=True, help="model directory to start from (read only)")
    add.add_argument("--entities", required=True,
                     help='NEW.jsonl: {"id": int, "name": str, "aliases": [str], "type": str?} per line')
    add.add_argument("--passages", required=True,
                     help='TEXT.jsonl: {"id", "text", "hyperlinks": {"link_offset", "link_length", '
                          '"link_target"}} per line (may link new and existing entities)')
    add.add_argument("--init", choices=ROW_INIT_METHODS, default=ROW_INIT_METHODS[0],
                     help="initial value of a new row: the model's reading of the name, or the mean "
                          "of the existing rows of its type (default %(default)s)")

    edit = sub.add_parser("edit", help="correct facts: fact overrides + re-fitted rows",
                          description="Keep the passages' statements as fact overrides and re-fit "
                                      "rows on them (each passage's subject by default; every linked "
                                      "entity, none, or --rows); records the change in "
                                      "memory_log.jsonl.")
    edit.add_argument("--model", required=True, help="model directory to start from (read only)")
    edit.add_argument("--passages", required=True, help="TEXT.jsonl with the new statements")
    edit.add_argument("--rows", type=_ids, default=None,
                      help="entity ids whose rows to re-fit (default: see --refit)")
    edit.add_argument("--refit", choices=EDIT_REFIT_CHOICES, default=EDIT_REFIT_CHOICES[0],
                      help="without --rows: re-fit each passage's subject (its first mention), every entity "
                           "the passages link, or no row (the edit is carried by its fact overrides) "
                           "(default %(default)s, chosen on dev edits; docs/knowledge.md)")

    remove = sub.add_parser("remove", help="hide entities from every memory read",
                            description="Hide entities from every read (the entity mask); no row is "
                                        "renumbered.")
    remove.add_argument("--model", required=True, help="model directory to start from (read only)")
    remove.add_argument("--ids", type=_ids, required=True, nargs="+", help="entity ids to hide")

    for p in (add, edit):
        p.add_argument("--fact_overrides", action=argparse.BooleanOptionalAction, default=True,
                       help="also keep the passages' statements as fact overrides: a question that "
                            "mentions a passage's subject (its first mention) and whose top answer has "
                            "the type of another linked entity gets that entity (for add: statements "
                            "about the new entities only; not in the original; docs/knowledge.md) "
                            "(default %(default)s)")
    for p in (add, edit, remove):
        p.add_argument("--output", required=True, help="new model directory to write")
        p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
        p.add_argument("--num_threads", type=int, default=0, help="torch threads (0 = torch's default)")
        p.add_argument("--verbose", action="store_true", help="log what is done")
    from edmem.knowledge.fit import FitSettings, edit_defaults
    _fit_flags(add, FitSettings())
    _fit_flags(edit, edit_defaults())
    return parser


def _settings(args: argparse.Namespace) -> Any:
    from edmem.knowledge.fit import FitSettings

    return FitSettings(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       anchor=args.anchor, norm_cap=args.norm_cap, mlm_probability=args.mlm_probability,
                       ssm_probability=args.ssm_probability,
                       mention_deletion_probability=args.mention_deletion_probability,
                       delete_fitted_mentions=args.delete_fitted_mentions, max_length=args.max_length,
                       seed=args.seed, progress=not args.no_progress)


def _overrides_note(record: dict[str, Any]) -> str:
    update = record.get("fact_overrides")
    return f"; {update['added']} fact overrides set" if update else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Warnings the user must see are printed below from the change record; the library's own
    # log lines only with --verbose.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    prog = f"{PROG} {args.command}"
    from edmem.errors import EDMemError
    from edmem.knowledge import api

    try:
        import torch
        if args.num_threads > 0:
            torch.set_num_threads(args.num_threads)
        if args.command == "add":
            record = api.add_entities(args.model, args.entities, args.passages, args.output, init=args.init,
                                      settings=_settings(args), lowercase=args.lowercase,
                                      overwrite=args.overwrite, overrides=args.fact_overrides)
            print(f"added {len(record['entities'])} entities ({record['fit']['steps']} steps on "
                  f"{record['passages']['passages']} passages{_overrides_note(record)}, "
                  f"{record['seconds']:.1f}s): {args.output}")
        elif args.command == "edit":
            record = api.edit_entities(args.model, args.passages, args.output, ids=args.rows, refit=args.refit,
                                       settings=_settings(args), lowercase=args.lowercase,
                                       overwrite=args.overwrite, overrides=args.fact_overrides)
            steps = record["fit"]["steps"] if record["fit"] else 0
            print(f"re-fitted {len(record['rows'])} rows ({steps} steps on "
                  f"{record['passages']['passages']} passages{_overrides_note(record)}, "
                  f"{record['seconds']:.1f}s): {args.output}")
        else:
            ids = [i for group in args.ids for i in group]
            record = api.remove_entities(args.model, ids, args.output, overwrite=args.overwrite)
            print(f"hid {len(record['ids'])} entities: {args.output}")
    except (EDMemError, OSError) as exc:
        message = str(exc) if isinstance(exc, EDMemError) else f"{type(exc).__name__}: {exc}"
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    text = record.get("passages")
    if isinstance(text, dict) and text.get("name_mismatches"):
        print(f"{prog}: warning: {text['path']}: {text['name_mismatches']} mention(s) whose text is not "
              "their entity's name or an alias (used anyway); first: "
              + "; ".join(text["name_mismatch_examples"]), file=sys.stderr)
    if args.verbose:
        print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
