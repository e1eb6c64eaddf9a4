"""Tables as files: a wide table (the feature table's 2,300 columns) written to Parquet without pandas' per-column
conversion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

#: numpy dtypes written column by column, with pandas' own names for them in the Parquet file's pandas metadata
#: (``pandas_type``, ``numpy_type``).
_PANDAS_TYPES = {np.dtype(np.float64): ("float64", "float64"), np.dtype(np.int64): ("int64", "int64"),
                 np.dtype(np.bool_): ("bool", "bool")}


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame.to_parquet()``'s file (pyarrow, snappy, the same schema and pandas metadata, so ``pd.read_parquet``
    gives the same frame back) for a frame of float64, int64, bool and string columns with string names and a
    named string index (the feature table).

    Each column becomes an Arrow array straight from its numpy values and the pandas metadata is written in
    pandas' documented format (tests compare the bytes with pandas' own). pandas' writer converts column by column
    through a Series each, and imports its Arrow extension types on first use. Any other frame (other dtypes, an
    unnamed or non-string index, an object column holding anything but strings and missing values) is written by
    ``frame.to_parquet()`` itself.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = _arrow_columns(frame)
    if arrays is None:
        return frame.to_parquet()
    names = [*frame.columns, frame.index.name]
    entries = [{"name": name, "field_name": name, "pandas_type": pandas_type, "numpy_type": numpy_type,
                "metadata": None} for name, (_, (pandas_type, numpy_type)) in zip(names, arrays, strict=True)]
    metadata = {"index_columns": [frame.index.name],
                "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                    "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
                "columns": entries, "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
                "pandas_version": pd.__version__}
    table = pa.Table.from_arrays([array for array, _ in arrays], names=names)
    table = table.replace_schema_metadata({b"pandas": json.dumps(metadata).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _arrow_columns(frame: pd.DataFrame) -> list | None:
    """(Arrow array, (pandas_type, numpy_type)) of each column, then of the index; None when the frame is not one
    :func:`parquet_bytes` writes itself."""
    import pyarrow as pa

    index = frame.index
    names = [*frame.columns, index.name]
    if (isinstance(index, pd.MultiIndex) or isinstance(frame.columns, pd.MultiIndex) or frame.columns.name is not None
            or not all(isinstance(name, str) for name in names) or len(set(names)) != len(names) or frame.attrs
            or index.dtype != np.dtype(object)):
        return None
    numeric = {}  # column position -> (values, dtype), from one 2D array per dtype (no Series per column)
    for dtype in _PANDAS_TYPES:
        positions = np.flatnonzero(frame.dtypes.to_numpy() == dtype)
        if positions.size:
            block = frame.iloc[:, positions].to_numpy(dtype=dtype)
            numeric.update({int(p): (block[:, k], dtype) for k, p in enumerate(positions)})
    out = []
    for position, dtype in enumerate(frame.dtypes):
        if position in numeric:
            values, dtype = numeric[position]
            out.append((pa.array(values, from_pandas=dtype.kind == "f"), _PANDAS_TYPES[dtype]))
        elif dtype == np.dtype(object):
            column = _object_array(frame.iloc[:, position].to_numpy())
            if column is None:
                return None
            out.append(column)
        else:
            return None
    index_column = _object_array(index.to_numpy())
    if index_column is None or index_column[1][0] != "unicode":
        return None
    out.append(index_column)
    return out


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _object_array(values: np.ndarray) -> tuple | None:
    """An object column as pandas writes it: strings with missing values (None, NaN, pd.NA) as an Arrow string
    array (``unicode``), a column of missing values only as an Arrow null array (``empty``); None for anything
    else."""
    import pyarrow as pa

    if not all(isinstance(value, str) or _missing(value) for value in values):
        return None
    if all(_missing(value) for value in values):
        return pa.nulls(len(values)), ("empty", "object")
    return pa.array(values, type=pa.string(), from_pandas=True), ("unicode", "object")
