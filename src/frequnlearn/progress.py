"""Progress of long stages: one tqdm bar at a time on a terminal, nothing anywhere else.

Every stage (generation, pretraining, unlearning, evaluation) opens its bar with `bar()`. A bar opened
while another one is showing (the evaluation inside an unlearning run) does not stack a second line
under it: its count shows in the open bar's description until it closes, so the terminal holds one
line that is always current. Bars are off when stderr is not a terminal (logs, CI, pipes) and inside
`quiet()` (the study's `--quiet`); they never leave a line behind, so the study's own status lines
stay readable.
"""

from __future__ import annotations

import contextlib
import sys
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

# Seconds between two redraws of the line: a bar updated every millisecond costs no terminal time.
REDRAW_S = 0.1

_quiet = [False]
# The bar on screen first, then the nested bars reporting into it. Weak references: a bar left open by
# an exception goes away with the frame that held it (tqdm then clears its line) instead of capturing
# every later bar.
_refs: list[weakref.ref[Bar]] = []


def _shown() -> list[Bar]:
    bars = [b for b in (ref() for ref in _refs) if b is not None and b.active]
    if bars and bars[0]._tqdm is None:
        bars = []
    _refs[:] = [weakref.ref(b) for b in bars]
    return bars


@contextlib.contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """No bars while inside (a study run with --quiet); `on=False` leaves things as they are."""
    before = _quiet[0]
    _quiet[0] = before or on
    try:
        yield
    finally:
        _quiet[0] = before


def _terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class Bar:
    """A progress bar: a tqdm line, a status inside the bar already shown, or nothing (`active` False).

    `update(n)` advances it, `set(**fields)` shows named numbers beside it (loss, tokens/s, ...).
    """

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, enabled: bool) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.fields: dict[str, str] = {}
        self._tqdm: Any = None
        self._drawn = 0.0
        self.active = False
        if not enabled or _quiet[0]:
            return
        if _shown():
            self.active = True
            _refs.append(weakref.ref(self))
            self._redraw(force=True)
        elif _terminal():
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
            self.active = True
            _refs.append(weakref.ref(self))

    def update(self, n: float = 1) -> None:
        if not self.active:
            return
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        else:
            self._redraw()

    def set(self, **fields: Any) -> None:
        """Numbers to show beside the count; formatted by the caller (e.g. f"{loss:.3f}")."""
        if not self.active:
            return
        self.fields.update({k: str(v) for k, v in fields.items()})
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(self._fields(), refresh=False)
        else:
            self._redraw()

    def close(self) -> None:
        if not self.active:
            return
        self.active = False
        if self._tqdm is not None:
            self._tqdm.close()
            return
        shown = _shown()
        if len(shown) > 1:  # the line shows the enclosing nested bar's status again
            shown[-1]._redraw(force=True)
        elif shown:  # or the bar on screen as it was
            shown[0]._tqdm.set_description_str(shown[0].desc, refresh=True)

    def _fields(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.fields.items())

    def _status(self) -> str:
        count = f"{self.n:g}/{self.total}" if self.total is not None else f"{self.n:g}"
        fields = f" {self._fields()}" if self.fields else ""
        return f"{self.desc} {count} {self.unit}{fields}"

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < REDRAW_S and self.n != self.total:
            return
        self._drawn = now
        shown = _shown()
        if shown:
            shown[0]._tqdm.set_description_str(f"{shown[0].desc} | {self._status()}", refresh=True)

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
