"""CSV text whose lines may be hostile (an import file from anywhere): ``capped_lines`` feeds ``csv.reader``
the physical lines of a text stream without ever holding more than ``limit`` characters of one line in
memory; an over-long line is read to its end in chunks and stands as a one-cell row ``[OVERSIZE]``, which
the importer reports with its line number."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

OVERSIZE = "\x00line-too-long"  # the one cell of the row that stands for an over-long line


def capped_lines(text: IO[str], limit: int) -> Iterator[str]:
    """The physical lines of ``text``; a line longer than ``limit`` characters becomes ``"OVERSIZE"``."""
    while True:
        line = text.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith("\n"):
            while True:
                rest = text.readline(limit)
                if not rest or rest.endswith("\n"):
                    break
            yield f'"{OVERSIZE}"\n'
            continue
        yield line
