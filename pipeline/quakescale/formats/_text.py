"""Line-oriented text tables shared by the format readers."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator


def token_lines(
    path, min_fields: int, error: type[Exception], expected: str, comment: str | None = None
) -> Iterator[tuple[int, str, list[str]]]:
    """``(line_number, line, tokens)`` of every non-blank line of ``path`` (and not a ``comment``
    line); a line with fewer than ``min_fields`` tokens raises ``error`` naming the file, the line
    number, what was ``expected`` and what was found."""
    path = Path(path)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        tok = line.split()
        if not tok or (comment and line.lstrip().startswith(comment)):
            continue
        if len(tok) < min_fields:
            raise error(f"{path}:{n}: expected {expected} ({min_fields} fields), got {len(tok)}: {line!r}")
        yield n, line, tok


def leading_floats(line: str) -> list[float]:
    """The numbers at the start of ``line`` (whitespace-separated), up to the first token that is
    not one (trailing labels such as a layer name are allowed)."""
    out = []
    for tok in line.split():
        try:
            out.append(float(tok))
        except ValueError:
            break
    return out
