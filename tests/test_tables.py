"""hccrad.io.tables.parquet_bytes: pandas' own Parquet file, byte for byte, without its per-column conversion."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from hccrad.io.tables import parquet_bytes


def feature_table_like(n_rows: int, n_features: int, seed: int = 0) -> pd.DataFrame:
    """The feature table's make-up: clinical string, int, float and bool columns, then float features with NaN."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "center": rng.choice(["A", "B", None], n_rows).tolist(),
        "child_pugh": rng.choice(["A", "B"], n_rows).tolist(),
        "child_pugh_score": [None] * n_rows,  # a clinical column nobody filled in: pandas' "empty" column
        "age": rng.integers(30, 90, n_rows),
        "afp": rng.lognormal(3, 2, n_rows),
        "event": rng.random(n_rows) < 0.5,
    }, index=pd.Index([f"P{k:03d}" for k in range(n_rows)], name="patient_id"))
    features = rng.normal(size=(n_rows, n_features))
    features[rng.random(features.shape) < 0.05] = np.nan
    columns = [f"Tumor_original_firstorder_F{k}" for k in range(n_features)]
    return frame.join(pd.DataFrame(features, index=frame.index, columns=columns))


@pytest.mark.parametrize("n_rows", [1, 7, 60])
def test_the_feature_tables_file_is_pandas_own_byte_for_byte(monkeypatch, n_rows):
    frame = feature_table_like(n_rows, 500, seed=n_rows)
    expected = frame.to_parquet()
    # the fast path is the one taken: pandas' writer is not called
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda *args, **kwargs: pytest.fail("pandas' writer called"))
    written = parquet_bytes(frame)
    assert written == expected
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(written)), frame, check_exact=True)


def test_missing_strings_and_every_column_kind_round_trip():
    frame = pd.DataFrame({"center": ["A", None, "B"], "note": ["a", np.nan, pd.NA], "score": np.array([1, 2, 3]),
                          "flag": [True, False, True], "x": [1.5, np.nan, -2.0]},
                         index=pd.Index(["P1", "P2", None], name="patient_id"))
    assert parquet_bytes(frame) == frame.to_parquet()


@pytest.mark.parametrize("case", ["range index", "unnamed index", "category",
                                  "mixed objects", "bytes", "named columns", "attrs", "multiindex", "no rows",
                                  "float32", "nullable int", "datetime", "numeric column name"])
def test_any_other_frame_is_written_by_pandas_itself(case):
    """Frames parquet_bytes does not write itself give pandas' own file (it hands them to ``to_parquet``)."""
    frame = feature_table_like(4, 3)
    if case == "range index":
        frame = frame.reset_index(drop=True)
    elif case == "unnamed index":
        frame.index.name = None
    elif case == "category":
        frame["center"] = frame["center"].astype("category")
    elif case == "mixed objects":
        frame["center"] = ["A", 1, None, "B"]
    elif case == "bytes":
        frame["center"] = [b"A", b"B", None, b"C"]
    elif case == "named columns":
        frame.columns.name = "feature"
    elif case == "attrs":
        frame.attrs["source"] = "bench"
    elif case == "multiindex":
        frame.index = pd.MultiIndex.from_arrays([frame.index, range(4)], names=["patient_id", "k"])
    elif case == "no rows":
        frame = frame.iloc[:0]
    elif case == "float32":
        frame["afp"] = frame["afp"].astype(np.float32)
    elif case == "nullable int":
        frame["age"] = frame["age"].astype("Int64")
    elif case == "datetime":
        frame["seen"] = pd.Timestamp("2026-12-07")
    elif case == "numeric column name":
        frame[3] = 1.0
    assert outcome(parquet_bytes, frame) == outcome(lambda table: table.to_parquet(), frame)


def outcome(write, frame: pd.DataFrame) -> bytes | type:
    """The file's bytes, or the type of the error writing it raised (pandas cannot write an object column of
    strings and numbers)."""
    try:
        return write(frame)
    except Exception as error:  # noqa: BLE001  (compared with the other writer's)
        return type(error)
