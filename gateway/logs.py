"""Logging set-up for the entry point only (libraries just get their module logger)."""

from __future__ import annotations

import logging
import os
import sys

from drivers import TRACE


def setup(level: str) -> None:
    numeric = TRACE if level == "TRACE" else logging.getLevelName(level)
    if os.environ.get("JOURNAL_STREAM"):
        # journald adds time and unit; keep lines short and prefixed with syslog priority
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # third-party chatter stays at WARNING unless we trace
    if numeric > logging.DEBUG:
        for noisy in ("aiosqlite", "asyncio", "bleak"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # no server logger to silence: the API's own server (gateway/api/httpd.py; h11 and
    # wsproto log nothing) never logs a client's bytes or the token (tests/test_logs.py)
