"""The `biomed` logger: one name, one format, three verbosities shared by every layer.

The CLI sets the verbosity once (`--quiet`, default, `--verbose`); the driver passes it to Ray
Train workers and Tune trials in their configs, and each process configures itself from it:

- quiet: warnings and errors only (the final summary still goes to stdout);
- default: one line per epoch and per trial, with Ray's per-report chatter left out;
- verbose: everything, Ray's own INFO logs included.

Library callers that never configure it get the default behaviour and Python's own handling of
the `biomed` logger's records.
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "biomed"
# The one format; plain INFO lines (most of what a user reads) leave out their level's name.
FORMAT = "%(asctime)s [biomed] %(levelname)s: %(message)s"
INFO_FORMAT = "%(asctime)s [biomed] %(message)s"
DATE_FORMAT = "%H:%M:%S"
VERBOSITIES = {"quiet": logging.WARNING, "default": logging.INFO, "verbose": logging.DEBUG}


class _Formatter(logging.Formatter):
    def __init__(self):
        super().__init__(FORMAT, DATE_FORMAT)
        self._info = logging.Formatter(INFO_FORMAT, DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return self._info.format(record) if record.levelno == logging.INFO else super().format(record)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted, not the stream it was when the
    handler was made: a caller that swaps stderr for a while (a notebook cell's capture, pytest's
    capsys) and closes it would otherwise leave every later line failing with "--- Logging error
    ---" (the same idea as logging.lastResort's handler)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ and setStream assign it
        pass


def get_logger(name: str | None = None) -> logging.Logger:
    """The `biomed` logger, or its child for a module (`get_logger(__name__)` under jobs/...)."""
    if not name or name == LOGGER_NAME:
        return logging.getLogger(LOGGER_NAME)
    return logging.getLogger(f"{LOGGER_NAME}.{name.removeprefix(LOGGER_NAME + '.')}")


def configure(verbosity: str = "default", *, stream=None) -> None:
    """Send the `biomed` logger's records at `verbosity` to stderr (or `stream`) in FORMAT.

    Safe to call again: the handler is replaced, not added twice.
    """
    if verbosity not in VERBOSITIES:
        raise ValueError(f"verbosity {verbosity!r} is not one of {sorted(VERBOSITIES)}")
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if getattr(h, "_biomed", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.setFormatter(_Formatter())
    handler._biomed = True
    logger.addHandler(handler)
    logger.setLevel(VERBOSITIES[verbosity])
    # Ray's processes put their own handler on the root logger; one line should print once.
    logger.propagate = False


def verbosity() -> str:
    """This process's verbosity, read off the `biomed` logger ('default' if never configured)."""
    level = logging.getLogger(LOGGER_NAME).level
    if level == logging.NOTSET:
        return "default"
    if level <= logging.DEBUG:
        return "verbose"
    return "quiet" if level >= logging.WARNING else "default"


def is_verbose() -> bool:
    return verbosity() == "verbose"
