"""Progress of long stages: a tqdm bar on a terminal, a heartbeat line every 30 s in a log.

Every stage (generation, pretraining, unlearning, evaluation) opens its bar with `bar()`. On a terminal
(stderr) it is one tqdm line; a bar opened while another one is showing (the evaluation inside an
unlearning run) does not stack a second line under it: its count shows in the open bar's line until it
closes. Where the output goes to a log instead, there are no bars: the outermost bar writes a heartbeat
line every `HEARTBEAT_S` seconds (its count, its numbers such as loss and tokens/s, the nested bar's
count, elapsed time and time left) and a closing line if it wrote any. The log is stderr when stderr is
not a terminal (nohup, CI, `2>&1`), else stdout when stdout is not one (`make study > study.log`: the
terminal keeps its bar, the file gets the lines). Nothing inside `quiet()` (the study's `--quiet`).

`message()` prints one of the tool's own lines (a study's status line, a warning) above an open bar
instead of through it, and into the log as well; `route_logging()` sends the package's log records
there. `quiet_third_party()` turns off other libraries' bars and their import-time chatter.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

# Seconds between two redraws of the line: a bar updated every millisecond costs no terminal time.
REDRAW_S = 0.1
# Seconds between two heartbeat lines in a log.
HEARTBEAT_S = 30.0
# The clock of redraws, heartbeats and time estimates (tests replace it with a fake one).
clock = time.monotonic

_quiet = [False]
# The outermost bar first, then the nested bars reporting into it. Weak references: a bar left open by
# an exception goes away with the frame that held it (tqdm then clears its line) instead of capturing
# every later bar.
_refs: list[weakref.ref[Bar]] = []


def _shown() -> list[Bar]:
    bars = [b for b in (ref() for ref in _refs) if b is not None and b.active]
    if bars and not bars[0].outermost:
        bars = []
    _refs[:] = [weakref.ref(b) for b in bars]
    return bars


@contextlib.contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """No bars and no heartbeats while inside (a study run with --quiet); `on=False` leaves things as
    they are."""
    before = _quiet[0]
    _quiet[0] = before or on
    try:
        yield
    finally:
        _quiet[0] = before


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _terminal() -> bool:
    return _isatty(sys.stderr)


def log_stream() -> Any | None:
    """Where heartbeat lines go: stderr when it is not a terminal, else stdout when that is not one;
    None when both are terminals (the bar says it all)."""
    if not _isatty(sys.stderr):
        return sys.stderr
    if not _isatty(sys.stdout):
        return sys.stdout
    return None


def hms(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def message(text: str) -> None:
    """One line of the tool's own on stderr, written above an open bar (never through it), and also on
    stdout when that is a log while stderr is a terminal, so the log holds what the terminal shows."""
    if any(b._tqdm is not None for b in _shown()):
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)
    if _isatty(sys.stderr) and not _isatty(sys.stdout):
        print(text, file=sys.stdout, flush=True)


class _MessageHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message(self.format(record))
        except Exception:  # logging must never stop a run
            self.handleError(record)


def route_logging() -> None:
    """The package's warnings (logger `frequnlearn`) through `message`: one line each, never splitting
    a bar, in the log too."""
    logger = logging.getLogger("frequnlearn")
    if not any(isinstance(h, _MessageHandler) for h in logger.handlers):
        logger.addHandler(_MessageHandler())


class Bar:
    """A progress bar: a tqdm line and/or heartbeats into a log, a status inside the bar already shown,
    or nothing (`active` False).

    `update(n)` advances it, `set(**fields)` shows named numbers beside it (loss, tokens/s, ...).
    """

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, enabled: bool) -> None:
        self.total, self.desc, self.unit, self.n, self.initial = total, desc, unit, initial, initial
        self.fields: dict[str, str] = {}
        self._tqdm: Any = None
        self._log: Any = None
        self._drawn = 0.0
        self._started = self._beat = clock()
        self._beats = 0
        self.active = False
        if not enabled or _quiet[0]:
            return
        if _shown():
            self.active = True
            _refs.append(weakref.ref(self))
            self._redraw(force=True)
            return
        if _terminal():
            from tqdm import tqdm

            self._tqdm = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                leave=False,
                dynamic_ncols=True,
                mininterval=REDRAW_S,
                miniters=1,
                file=sys.stderr,
            )
        self._log = log_stream()
        self.active = True
        _refs.append(weakref.ref(self))

    @property
    def outermost(self) -> bool:
        """Whether this bar owns the line (and the heartbeats) rather than reporting into another."""
        return self._tqdm is not None or self._log is not None

    def update(self, n: float = 1) -> None:
        if not self.active:
            return
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif not self.outermost:
            self._redraw()
        self._pulse()

    def set(self, **fields: Any) -> None:
        """Numbers to show beside the count; formatted by the caller (e.g. f"{loss:.3f}")."""
        if not self.active:
            return
        self.fields.update({k: str(v) for k, v in fields.items()})
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(self._fields(), refresh=False)
        elif not self.outermost:
            self._redraw()

    def close(self) -> None:
        if not self.active:
            return
        self.active = False
        if self.outermost:
            if self._tqdm is not None:
                self._tqdm.close()
            if self._log is not None and self._beats:
                ended = "done" if self.total is not None and self.n >= self.total else "stopped"
                self._write(f"{self._status()} | {ended} after {hms(clock() - self._started)}")
            return
        shown = _shown()
        if len(shown) > 1:  # the line shows the enclosing nested bar's status again
            shown[-1]._redraw(force=True)
        elif shown and shown[0]._tqdm is not None:  # or the bar on screen as it was
            shown[0]._tqdm.set_description_str(shown[0].desc, refresh=True)

    def _fields(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.fields.items())

    def _status(self) -> str:
        count = f"{self.n:g}/{self.total}" if self.total is not None else f"{self.n:g}"
        fields = f" {self._fields()}" if self.fields else ""
        return f"{self.desc} {count} {self.unit}{fields}"

    def _redraw(self, force: bool = False) -> None:
        now = clock()
        if not force and now - self._drawn < REDRAW_S and self.n != self.total:
            return
        self._drawn = now
        shown = _shown()
        if shown and shown[0]._tqdm is not None:
            shown[0]._tqdm.set_description_str(f"{shown[0].desc} | {self._status()}", refresh=True)

    def _pulse(self) -> None:
        """A heartbeat of the outermost bar when one is due (any bar's progress may trigger it: a long
        evaluation inside an unlearning step still shows that the run is alive)."""
        shown = _shown()
        if shown and shown[0]._log is not None and clock() - shown[0]._beat >= HEARTBEAT_S:
            shown[0]._heartbeat(shown[1:])

    def _heartbeat(self, nested: list[Bar]) -> None:
        now = clock()
        self._beat = now
        self._beats += 1
        parts = [self._status(), *(b._status() for b in nested), f"elapsed {hms(now - self._started)}"]
        done, seconds = self.n - self.initial, now - self._started
        if self.total is not None and done > 0 and seconds > 0:
            parts[-1] += f", left ~{hms((self.total - self.n) * seconds / done)}"
        self._write(" | ".join(parts))

    def _write(self, line: str) -> None:
        print(line, file=self._log, flush=True)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(total: int | None, desc: str, unit: str = "it", *, initial: int = 0, enabled: bool = True) -> Bar:
    """A bar for `total` units (None: unknown); `enabled=False` on processes other than the main one."""
    return Bar(total, desc, unit, initial, enabled)


def track(items: Iterable[Any], desc: str, unit: str = "it", *, total: int | None = None) -> Iterator[Any]:
    """`items` one by one, counted on a bar (`total` defaults to `len(items)` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(total, desc, unit) as b:
        for item in items:
            yield item
            b.update(1)


# Loggers of other libraries whose import-time warnings say nothing about a run: torchao's GPU kernels
# that a CPU build cannot load, and torch's deprecation note on the types torchao registers.
CHATTY_LOGGERS = ("torchao", "torch.utils._pytree")
# Where each library keeps its bars' switch (is_progress_bar_enabled, enable/disable_progress_bar).
_BAR_SWITCH = {"transformers": "transformers.utils.logging", "datasets": "datasets.utils"}


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Other libraries' progress bars off (transformers' "Loading weights" and "Writing model shards",
    hub downloads, datasets' preparation), and their import-time chatter, while inside; restored
    afterwards. The tool's own bars and heartbeats say where a run is."""
    from huggingface_hub import utils as hub

    hub_was_on = not hub.are_progress_bars_disabled()
    hub.disable_progress_bars()  # transformers imported from now on starts with its bars off
    # Libraries imported already (their bars were set up on import); both name the switch alike.
    imported = [name for name in ("transformers", "datasets") if name in sys.modules]
    switches = [importlib.import_module(_BAR_SWITCH[name]) for name in imported]
    was_on = [lib.is_progress_bar_enabled() for lib in switches]
    for lib in switches:
        lib.disable_progress_bar()
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for lib, on in zip(switches, was_on):
            if on:
                lib.enable_progress_bar()
        if hub_was_on:
            hub.enable_progress_bars()
            if "transformers" in sys.modules and "transformers" not in imported:
                # Imported inside, it took the hub's "off" as its own.
                importlib.import_module(_BAR_SWITCH["transformers"]).enable_progress_bar()
