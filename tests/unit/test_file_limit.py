"""A node raises its file-descriptor limit to what its connection bounds need, or says so."""

from __future__ import annotations

import dataclasses
import logging
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfort.config import Config, LimitsConfig
from mailfort.node import Node


@pytest.fixture
def hard_limit() -> Iterator[int]:
    """The hard limit; the soft one is lowered to 256 for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def node(tmp_path: Path, limits: LimitsConfig) -> Node:
    return Node(dataclasses.replace(Config(), data_dir=tmp_path, limits=limits))


def test_the_soft_limit_rises_to_what_the_bounds_need(tmp_path: Path, hard_limit: int) -> None:
    limits = LimitsConfig(max_connections=100, imap_max_connections=200, pop3_max_connections=300)
    node(tmp_path, limits)._raise_file_limit()
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert soft >= 100 + 200 + 300 + 1000  # and the status web's connections
    assert soft <= hard_limit


def test_a_hard_limit_below_the_bounds_is_said_at_start(
    tmp_path: Path, hard_limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    limits = LimitsConfig(max_connections=hard_limit + 1)
    with caplog.at_level(logging.WARNING, logger="mailfort.node"):
        node(tmp_path, limits)._raise_file_limit()
    assert "event=file_limit_low" in caplog.text
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard_limit
