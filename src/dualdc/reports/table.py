"""Plain-text tables for reports that may hold thousands of rows.

A report of a 10,000-host estate can hold a few thousand findings; laying them out with rich's
``Table`` cost most of a second of the validate command's CPU. This writer does the same job
for plain text (no colour, no terminal) in linear time: columns as wide as their widest cell,
the last column taking what is left of the width, long cells folded onto further lines (at
spaces where the column wraps words, anywhere otherwise). Widths are counted in terminal
cells as rich counts them, so Korean text (two cells a character) stays aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len, get_character_cell_size

GAP = 2
INDENT = 2
#: The narrowest the last column (the free text) gets, and a folding column.
MIN_LAST = 30
MIN_FOLDED = 8


@dataclass(frozen=True)
class Column:
    header: str
    wrap: bool = True  # False: never folded (short identifiers)


def cells(text: str) -> int:
    """Terminal cells ``text`` takes (rich's measure: two for East Asian wide characters)."""
    return len(text) if text.isascii() else cell_len(text)


def _cut(text: str, width: int) -> tuple[str, str]:
    """The longest head of ``text`` that fits ``width`` cells (at least one character), and the rest."""
    if text.isascii():
        return text[:width], text[width:]
    used = 0
    for i, ch in enumerate(text):
        used += get_character_cell_size(ch)
        if used > width and i:
            return text[:i], text[i:]
    return text, ""


def fold(text: str, width: int, words: bool) -> list[str]:
    """``text`` as lines of at most ``width`` cells; at spaces when ``words``, where possible."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        rest = paragraph
        while cells(rest) > width:
            head, tail = _cut(rest, width)
            if words and tail and not tail.startswith(" "):
                space = head.rfind(" ")
                if space > 0:
                    head, tail = head[:space], head[space:] + tail
            lines.append(head.rstrip())
            rest = tail.lstrip(" ")
        lines.append(rest)
    return lines


def render(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> str:
    """A titled table: header, a rule under it, then the rows (each possibly several lines)."""
    natural = [cells(c.header) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            size = cells(cell) if "\n" not in cell else max(cells(part) for part in cell.splitlines())
            natural[i] = max(natural[i], size)
    widths = _fit(natural, columns, width)
    out = [title, ""]
    out.append(_line([c.header for c in columns], widths))
    out.append(" " * INDENT + (" " * GAP).join("─" * w for w in widths))
    for row in rows:
        parts = [fold(cell, w, c.wrap) if cells(cell) > w or "\n" in cell else [cell]
                 for cell, w, c in zip(row, widths, columns, strict=True)]
        for n in range(max(len(p) for p in parts)):
            out.append(_line([p[n] if n < len(p) else "" for p in parts], widths))
    return "\n".join(out) + "\n"


def _fit(natural: list[int], columns: Sequence[Column], width: int) -> list[int]:
    """Column widths within ``width``: the last column (the free text) keeps up to half the room,
    the folding columns give up the rest, widest first; what they leave goes back to the last."""
    widths = list(natural)
    room = width - INDENT - GAP * (len(widths) - 1)
    if sum(widths) <= room:
        return widths
    budget = room - min(widths[-1], max(room // 2, MIN_LAST))
    while sum(widths[:-1]) > budget:
        foldable = [i for i in range(len(widths) - 1) if columns[i].wrap and widths[i] > MIN_FOLDED]
        if not foldable:
            break
        widest = max(foldable, key=lambda i: widths[i])
        floor = max([MIN_FOLDED] + [widths[i] for i in foldable if i != widest])
        widths[widest] -= min(sum(widths[:-1]) - budget, widths[widest] - floor) or 1
    widths[-1] = min(natural[-1], max(room - sum(widths[:-1]), MIN_LAST))
    return widths


def _line(parts: Sequence[str], widths: Sequence[int]) -> str:
    padded = [part + " " * (w - cells(part)) for part, w in zip(parts[:-1], widths[:-1], strict=True)]
    return (" " * INDENT + (" " * GAP).join([*padded, parts[-1]])).rstrip()
