"""Logging like the original (docs/training.md): ``log.txt`` in append mode plus stderr, format
``%(asctime)s - %(levelname)s - %(name)s - %(message)s`` with ``%m/%d/%Y %H:%M:%S`` dates, level
``--log_level`` on rank 0 and ``--log_level_replica`` elsewhere. Only rank 0 writes the file.

The logger is named ``__main__`` because that is what the original's lines carry
(``... - INFO - __main__ - Step 5, ...``) and log parsers key on it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s - %(levelname)s - %(name)s - %(message)s"
DATE_FORMAT = "%m/%d/%Y %H:%M:%S"
LOGGER_NAME = "__main__"


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_logging(log_file: str | Path | None, is_main: bool, log_level: int = logging.INFO,
                  log_level_replica: int = logging.WARNING) -> logging.Logger:
    """Configure the ``__main__`` logger (and ``edmem.*`` loggers) for this process.

    Re-entrant: handlers from a previous call in the same process (tests) are replaced.
    """
    level = log_level if is_main else log_level_replica
    formatter = logging.Formatter(LOG_FORMAT, datefmt=DATE_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None and is_main:
        handlers.append(logging.FileHandler(str(log_file), mode="a", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
    for name in (LOGGER_NAME, "edmem"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return get_logger()


def close_logging() -> None:
    """Flush and detach the handlers (tests run several jobs in one process)."""
    for name in (LOGGER_NAME, "edmem"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            handler.flush()
            logger.removeHandler(handler)
            handler.close()
