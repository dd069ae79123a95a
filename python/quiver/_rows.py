"""Query results: `Rows`, and its conversions to pandas, polars, Arrow and numpy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List

if TYPE_CHECKING:
    import numpy as np
    import pandas
    import polars
    import pyarrow


class Rows:
    """A query's result: iterates one dict per row; `.columns`, `.rows`
    (tuples), `len()`, indexing, and `.to_pandas()` when pandas is installed."""

    __slots__ = ("columns", "rows")

    def __init__(self, columns: List[str], rows: List[tuple]):
        self.columns = columns
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        cols = self.columns
        return (dict(zip(cols, r)) for r in self.rows)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return dict(zip(self.columns, self.rows[i]))

    def __repr__(self) -> str:
        return f"Rows(columns={self.columns!r}, {len(self.rows)} rows)"

    def to_pandas(self) -> "pandas.DataFrame":
        """The rows as a pandas DataFrame, one column per result column
        (nodes and edges as dicts). Needs pandas."""
        import pandas as pd

        return pd.DataFrame.from_records(self.rows, columns=self.columns)

    def _columns(self) -> Dict[str, List[Any]]:
        return {c: [r[i] for r in self.rows] for i, c in enumerate(self.columns)}

    def to_arrow(self) -> "pyarrow.Table":
        """The rows as a pyarrow Table (nodes and edges as structs, types
        inferred per column). Needs pyarrow."""
        import pyarrow as pa

        return pa.table(self._columns())

    def to_polars(self) -> "polars.DataFrame":
        """The rows as a polars DataFrame (nodes and edges as structs).
        Needs polars."""
        import polars as pl

        return pl.DataFrame(self._columns(), strict=False)

    def to_numpy(self) -> "np.ndarray":
        """The rows as a 2-D numpy array (rows × columns): float64 or int64
        when every value is a number, else objects."""
        import numpy as np

        numbers = all(type(v) in (int, float) for r in self.rows for v in r)
        return np.array(self.rows, dtype=None if numbers else object).reshape(len(self.rows), len(self.columns))
