"""Problems with the data, named by the rows that have them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Row numbers shown per problem before "and N more".
ROWS_SHOWN = 5


@dataclass(frozen=True)
class BadRows:
    """Rows of the source that share one problem (1-based; lines for JSON Lines)."""

    reason: str
    rows: tuple[int, ...]
    unit: str = "row"

    @property
    def count(self) -> int:
        return len(self.rows)

    def describe(self) -> str:
        shown = ", ".join(str(row) for row in self.rows[:ROWS_SHOWN])
        more = f" and {self.count - ROWS_SHOWN} more" if self.count > ROWS_SHOWN else ""
        plural = "s" if self.count != 1 else ""
        return f"{self.reason}: {self.count} {self.unit}{plural} ({shown}{more})"


class DataError(ValueError):
    """The data cannot be used as the spec describes it; ``problems`` name the rows."""

    def __init__(self, message: str, problems: Sequence[BadRows] = ()) -> None:
        self.problems = tuple(problems)
        lines = [message, *(f"  - {problem.describe()}" for problem in self.problems)]
        super().__init__("\n".join(lines))
