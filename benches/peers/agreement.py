"""Checks a contender's predictions against the scorch reference, row by row, joined on id.

Outputs are read as Parquet datasets with pyarrow, which skips paths starting with `_` or `.`:
scorch's `_scorch/` commit log and `_SUCCESS`, Spark's `_SUCCESS` and `.crc` files. Ids are
0..rows-1 in every dataset, so predictions are aligned by scattering them into an array indexed
by id; a missing or duplicated id is a disagreement of its own.
"""
import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds


class OutputError(Exception):
    """An output that cannot be compared: missing rows, duplicate ids, unreadable files."""


def load(folder, rows):
    """The `prediction` column of the output in `folder`, ordered by id: a float64 vector
    (NULL as NaN) for scores, a float32 [rows, dim] matrix for embeddings."""
    try:
        table = ds.dataset(folder, format="parquet").to_table(columns=["id", "prediction"])
    except (OSError, ValueError) as e:
        raise OutputError(f"unreadable output: {e}") from e
    ids = table.column("id").to_numpy()
    if len(ids) != rows:
        raise OutputError(f"{len(ids)} rows written, expected {rows}")
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= rows or np.bincount(ids, minlength=rows).max(initial=1) != 1:
        raise OutputError("ids are not exactly 0..rows-1 once each")
    column = table.column("prediction").combine_chunks()
    if hasattr(column.type, "value_type"):  # list or fixed-size list of floats: an embedding
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        if len(values) % rows:
            raise OutputError("embeddings of unequal lengths")
        out = np.empty((rows, len(values) // rows), dtype=np.float32)
        out[ids] = values.reshape(rows, -1)
        return out
    out = np.empty(rows, dtype=np.float64)
    out[ids] = column.to_numpy(zero_copy_only=False)
    return out


def compare(reference, candidate, metric, tolerance):
    """{metric, value, tolerance, ok, detail} for two aligned outputs of `load`."""
    if metric == "min_cosine":
        if reference.shape != candidate.shape:
            return {"metric": metric, "value": None, "tolerance": tolerance, "ok": False,
                    "detail": f"dimension {candidate.shape[1]} vs {reference.shape[1]}"}
        a, b = reference.astype(np.float64), candidate.astype(np.float64)
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
        value = float(cos.min()) if len(cos) else 1.0
        below = int((cos < tolerance).sum())
        return {"metric": metric, "value": value, "tolerance": tolerance, "ok": below == 0,
                "detail": f"{below} rows below {tolerance}" if below else ""}
    ref_nan, cand_nan = np.isnan(reference), np.isnan(candidate)
    nan_mismatch = int((ref_nan != cand_nan).sum())
    both = ~ref_nan & ~cand_nan
    diff = np.abs(reference[both] - candidate[both])
    value = float(diff.max()) if len(diff) else 0.0
    over = int((diff > tolerance).sum())
    details = []
    if over:
        details.append(f"{over} rows differ by more than {tolerance:g}")
    if nan_mismatch:
        details.append(f"{nan_mismatch} rows NULL/NaN in one output only")
    return {"metric": metric, "value": value, "tolerance": tolerance, "ok": not details,
            "detail": "; ".join(details)}
