"""What every command prints the same way: usage tables of commands with sub-commands, and bad
input as one ``<prog>: error: ...`` line with a non-zero exit status (never a traceback)."""

from __future__ import annotations

import os
import sys

from edmem.errors import EDMemError

EXIT_ERROR = 1


def command_table(synopsis: str, heading: str, commands: dict[str, str], footer: str) -> str:
    """The usage text of a command with sub-commands (shared by ``edmem`` and ``edmem evaluate``)."""
    width = max(map(len, commands)) + 2
    lines = [f"usage: {synopsis}", "", f"{heading}:"]
    lines += [f"  {name:<{width}}{help_}" for name, help_ in commands.items()]
    lines += ["", footer]
    return "\n".join(lines)


def report_error(prog: str, exc: BaseException) -> int:
    """Print bad input as one line ``<prog>: error: [rank r] <message>`` (the rank only under
    several processes); return :data:`EXIT_ERROR`."""
    where = f"[rank {os.environ.get('RANK', '0')}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    message = str(exc) if isinstance(exc, EDMemError) else f"{type(exc).__name__}: {exc}"
    print(f"{prog}: error: {where}{message}", file=sys.stderr)
    return EXIT_ERROR
