"""A plain terminal for the demo: its own lines on screen, Spark, Ivy and library logs in a file.

Spark's JVM, Ivy's dependency resolution and the Python workers write to the process's file
descriptors 1 and 2, so those are pointed at the log file; ``print`` keeps a duplicate of the
terminal. At the end the warnings are summarised (counted by source, with the log's path), so
nothing that matters is dropped; on failure the log's tail is shown. Warnings the caller expects (a
pattern and its meaning in words) are said as notes, not counted among the warnings.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_WARN = re.compile(r"\b(WARN|WARNING)\b\s+(?:[\w.$]+\.)?([\w$]+):?\s*(.*)")


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


Expected = tuple[tuple[str, str], ...]  # (regex of a log line, what it means in words)


@contextmanager
def quiet_console(log_path: str, expected: Expected = ()) -> Iterator[None]:
    """Send fd 1/2 (JVM, Ivy, workers, logging) to ``log_path``; keep ``print`` on the terminal."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    log_file = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed below
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    old_stdout, old_stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = terminal, log_file
    root = logging.getLogger()
    for handler in root.handlers:  # basicConfig's handler held the old stderr object
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log_file)
    counter = _Counter()
    root.addHandler(counter)
    print(f"(Spark, Ivy and library logs: {log_path})")
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        root.removeHandler(counter)
        sys.stdout.flush()
        log_file.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        sys.stdout, sys.stderr = old_stdout, old_stderr
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is log_file:
                handler.setStream(old_stderr)
        log_file.close()
        summary = warning_summary(log_path, counter.records, expected)
        if summary:
            print(summary, file=terminal)
        if failed:
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                tail = fh.readlines()[-25:]
            print(f"the demo failed; the last lines of {log_path}:\n" + "".join(tail), file=terminal)
        terminal.close()


def warning_summary(log_path: str, records: list[logging.LogRecord], expected: Expected = ()) -> str:
    """The expected notices in words, then one line per other warning source (Python loggers and the JVM's
    WARN lines), most frequent first; "no warnings" when there are none."""
    counts: collections.Counter[str] = collections.Counter()
    noticed: dict[str, None] = {}

    def count(text: str, what: str) -> None:
        meaning = next((words for pattern, words in expected if re.search(pattern, text)), None)
        if meaning is None:
            counts[what] += 1
        else:
            noticed.setdefault(meaning)

    for r in records:
        message = r.getMessage()
        count(message, f"{r.name}: {_cut(message, 90)}")
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _WARN.search(line)
            if m and " WARNING " not in line:  # Python records are counted above, from the handler
                count(line, f"Spark {m.group(2)}: {_cut(m.group(3), 70)}")
    lines = [f"note: {meaning}" for meaning in noticed]
    if not counts:
        return "\n".join([*lines, f"no warnings (the full log: {log_path})"])
    lines.append(f"{sum(counts.values())} warnings (details in {log_path}):")
    lines += [f"  {n} x {what}" for what, n in counts.most_common(5)]
    if len(counts) > 5:
        lines.append(f"  ... and {len(counts) - 5} other kinds")
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when longer than ``width``."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    return text[:width].rsplit(" ", 1)[0] + "…"


@contextmanager
def progress(label: str, every_s: float = 30.0) -> Iterator[None]:
    """A progress line while a long step runs: redrawn in place on a terminal, a line per ``every_s`` otherwise."""
    stop = threading.Event()
    started = time.monotonic()
    tty = sys.stdout.isatty()

    def tick() -> None:
        while not stop.wait(1.0 if tty else every_s):
            elapsed = time.monotonic() - started
            print(f"\r   {label}: {elapsed:.0f} s" if tty else f"   {label}: {elapsed:.0f} s",
                  end="" if tty else "\n", flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if tty:
            print("\r", end="")
