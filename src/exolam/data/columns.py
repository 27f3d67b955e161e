"""Parquet columns of LeRobot datasets <-> numpy: dtypes, schemas, (nested) list columns to [T, *shape]."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from exolam.errors import ConfigError


def np_dtype(ft: dict):
    """The numpy dtype of a numeric feature, or None (video, image, string)."""
    try:
        dt = np.dtype(ft["dtype"])
    except TypeError:
        return None
    return dt if dt.kind in "biuf" else None


def parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing") from None
    except (OSError, pa.ArrowException) as e:
        raise ConfigError(f"{path}: cannot be read as parquet ({e}); truncated?") from None


def column_numpy(col, shape, dtype, where: str) -> np.ndarray:
    """A (nested) list or scalar column -> [T, *shape] of `dtype`."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        if arr.null_count:
            break
        arr = arr.flatten()
    if arr.null_count:
        raise ConfigError(f"{where} holds empty (null) values")
    values = arr.to_numpy(zero_copy_only=False)
    if values.size != n * math.prod(shape):
        raise ConfigError(f"{where} holds {values.size // max(n, 1)} values per frame, meta/info.json says shape "
                          f"{list(shape)}")
    return values.reshape(n, *shape).astype(dtype, copy=False)
