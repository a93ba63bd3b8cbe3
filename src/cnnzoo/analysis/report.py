"""Tables as text, CSV, JSON or markdown: the one formatter behind `info --layers`, `compare` and `bench`."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable

FORMATS = ("text", "csv", "json", "markdown")


@dataclass(frozen=True)
class Column:
    key: str  # field of the row dicts; the CSV header and JSON key
    title: str  # heading in text and markdown
    show: Callable[[Any], str] = str  # how text and markdown print a value (CSV and JSON keep it raw)
    left: bool = False  # left-align (names) instead of right-align (numbers)


def integer(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def percent(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def decimal(digits: int) -> Callable[[float | None], str]:
    return lambda x: "" if x is None else f"{x:,.{digits}f}"


def macs_text(macs: float, decimals: int = 3) -> str:
    """A MAC count for people: ``decimals`` decimals of G from 1 G up, M (one decimal) below, where the
    small networks live (LeNet-5, ShuffleNet's 140 M): 0.000 G says nothing."""
    return f"{macs / 1e9:.{decimals}f} G" if macs >= 1e9 else f"{macs / 1e6:.1f} M"


def reference_macs_text(gmacs: float) -> str:
    """A reference figure (in G, as ``ModelCfg.macs`` keeps it) in the unit ``macs_text`` would use."""
    return f"{gmacs:g} G" if gmacs >= 1 else f"{gmacs * 1e3:.10g} M"


def shape(s: tuple | None) -> str:
    """An output shape without its batch dimension: 64x56x56."""
    return "" if s is None else "x".join(str(d) for d in s[1:]) or "scalar"


def render(columns: list[Column], rows: list[dict], fmt: str = "text") -> str:
    """``rows`` as one table; ``fmt`` is one of ``FORMATS``."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, [c.key for c in columns], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    if fmt == "json":
        return json.dumps([{c.key: row.get(c.key) for c in columns} for row in rows], indent=1)
    cells = [[c.show(row.get(c.key)) for c in columns] for row in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(c.title for c in columns) + " |",
                 "|" + "|".join("---" if c.left else "--:" for c in columns) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    widths = [max([len(c.title)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if c.left else v.rjust(w) for v, w, c in zip(values, widths, columns)).rstrip()

    return "\n".join([line([c.title for c in columns])] + [line(r) for r in cells])
