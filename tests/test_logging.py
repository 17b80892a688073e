"""The `biomed` logger and the --quiet / --verbose flags, without a cluster.

What a user sees from a real run (one line per epoch, no Ray per-report chatter by default,
Ray's logs under --verbose) is asserted end to end in test_cli_train.
"""

from __future__ import annotations

import io
import logging

import pytest

from biomed import log
from jobs.cli import build_parser
from jobs.spec import parse_spec
from tests.conftest import tiny_spec


@pytest.fixture
def restore_biomed_logger():
    logger = logging.getLogger(log.LOGGER_NAME)
    saved = (logger.level, list(logger.handlers), logger.propagate)
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


def _emit_all(stream: io.StringIO) -> list[str]:
    child = log.get_logger("jobs.train")
    child.debug("a debug line")
    child.info("an info line")
    child.warning("a warning line")
    return stream.getvalue().splitlines()


@pytest.mark.parametrize(
    ("verbosity", "shown"),
    [("quiet", ["a warning line"]), ("default", ["an info line", "a warning line"]), ("verbose", ["a debug line", "an info line", "a warning line"])],
)
def test_verbosity_decides_what_is_shown(verbosity, shown, restore_biomed_logger):
    stream = io.StringIO()
    log.configure(verbosity, stream=stream)
    lines = _emit_all(stream)
    assert [line.split("] ", 1)[1].removeprefix("DEBUG: ").removeprefix("WARNING: ") for line in lines] == shown
    assert all(" [biomed] " in line for line in lines)
    assert log.verbosity() == verbosity


def test_one_format_and_one_handler_however_often_configured(restore_biomed_logger):
    stream = io.StringIO()
    log.configure("default", stream=stream)
    log.configure("default", stream=stream)
    log.get_logger().info("once")
    log.get_logger().warning("careful")
    info, warning = stream.getvalue().splitlines()
    assert info.endswith(" [biomed] once") and info[:8].count(":") == 2  # HH:MM:SS first
    assert warning.endswith(" [biomed] WARNING: careful")
    with pytest.raises(ValueError, match="'loud'"):
        log.configure("loud")


def test_flags_on_every_command_and_mutually_exclusive(capsys):
    parser = build_parser()
    assert parser.parse_args(["train", "spec.yaml"]).verbosity is None
    assert parser.parse_args(["train", "spec.yaml", "--quiet"]).verbosity == "quiet"
    assert parser.parse_args(["tune", "spec.yaml", "-v"]).verbosity == "verbose"
    assert parser.parse_args(["serve", "status", "-q"]).verbosity == "quiet"
    assert parser.parse_args(["models", "list", "--verbose"]).verbosity == "verbose"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["train", "spec.yaml", "--quiet", "--verbose"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_ray_train_logs_follow_the_verbosity(planted_dir, tmp_path, restore_biomed_logger):
    from jobs.trainer import build_trainer

    spec = parse_spec(tiny_spec(planted_dir, tmp_path))
    default = build_trainer(spec, name="x", payload={})
    assert default.run_config.logging_config.log_level == "WARNING"
    assert default.train_loop_config["verbosity"] == "default"
    log.configure("verbose", stream=io.StringIO())
    verbose = build_trainer(spec, name="x", payload={})
    assert verbose.run_config.logging_config.log_level == "INFO"
    assert verbose.train_loop_config["verbosity"] == "verbose"
    assert build_trainer(spec, name="x", payload={}, verbosity="quiet").train_loop_config["verbosity"] == "quiet"


def test_lines_follow_stderr_after_the_stream_they_started_on_is_closed(restore_biomed_logger, monkeypatch, capsys):
    # A CLI call configures the logger while stderr is a capture that is later closed (a test's
    # capsys, a notebook cell); later lines must reach the stderr of their own time.
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    log.configure("default")
    log.get_logger().info("to the first stream")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    log.get_logger().info("to the second stream")
    assert second.getvalue().endswith(" [biomed] to the second stream\n")
    assert "Logging error" not in second.getvalue() + capsys.readouterr().err
