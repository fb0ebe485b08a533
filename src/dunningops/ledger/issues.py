"""Row-level problems of an import, and the error that carries them all."""

from __future__ import annotations

from dataclasses import dataclass

from dunningops.errors import InvalidInputError

SHOWN = 50  # a terminal full; the reject file (--skip-invalid) has them all


@dataclass(frozen=True, order=True)
class RowIssue:
    file: str
    row: int
    column: str
    message: str
    unit: str = "row"  # "line" for JSON Lines

    def __str__(self) -> str:
        column = f", column {self.column}" if self.column else ""
        return f"{self.file}: {self.unit} {self.row}{column}: {self.message}"


class CellError(ValueError):
    """One cell is wrong: its column and why."""

    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


class LedgerImportError(InvalidInputError):
    """Invalid rows: nothing was written. Every problem is listed (the first SHOWN in the message)."""

    def __init__(self, issues: list[RowIssue], rows: int):
        self.issues = sorted(issues)
        n = len(self.issues)
        bad_rows = len({(i.file, i.row) for i in self.issues})  # an import of several files counts each file's rows
        lines = [f"{n} error{'s' if n != 1 else ''} in {bad_rows} of {rows} rows; nothing was imported:"]
        lines += [f"  {i}" for i in self.issues[:SHOWN]]
        if n > SHOWN:
            lines.append(f"  … and {n - SHOWN} more (import with --skip-invalid --reject-file FILE to get them all)")
        super().__init__("\n".join(lines))
