"""The Python contenders, one per invocation, as a competent user of each tool would write them:

    python3 benches/peers/peers.py PEER --input DIR --output DIR --model PATH --threads N \
        --report FILE [--features K] [--onnx-output NAME] [--onnx-column C] [--tokenizer DIR]

Each reads the Parquet dataset in --input (id plus features f0..f{K-1}, or id plus text), scores
every row and writes id + prediction as Parquet into --output (Snappy, the writers' default),
streaming in record batches of 65,536 rows where the tool allows it. The thread limits come from
the environment the harness sets (OMP_NUM_THREADS and friends) and from --threads, passed to
each library's own setting. The JSON --report records the setup time: from the start of this
script to the point where the model is loaded and data starts to flow (imports included).

Heavy libraries are imported inside each peer, after the clock starts, so that their import
time is part of the setup time and a peer never pays for another's imports.
"""
import argparse
import json
import os
import time

T0 = time.perf_counter()

BATCH_ROWS = 65536
EMBED_BATCH = 64      # sentences per forward pass (sentence-transformers' default is 32)
MAX_LENGTH = 256      # all-MiniLM-L6-v2's max_seq_length


def _features(k):
    return [f"f{i}" for i in range(k)]


class Peer:
    """Common plumbing: arguments, setup clock, the output file and the report."""

    def __init__(self, args):
        # Every peer reads or writes through pyarrow: its import belongs to the setup time.
        import pyarrow.dataset  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        self.args = args
        self.setup_s = None
        os.makedirs(args.output, exist_ok=True)
        self.out_file = os.path.join(args.output, "part-00000.parquet")

    def ready(self):
        """Marks the end of setup: imports done, model loaded."""
        self.setup_s = time.perf_counter() - T0

    def finish(self, rows):
        """Writes the report: setup time and rows written (None where the tool does not say)."""
        with open(self.args.report, "w") as f:
            json.dump({"setup_s": self.setup_s, "rows": rows}, f)


# --- shared pieces for the pyarrow-based peers ------------------------------------------------

def _arrow_batches(path, columns, threads):
    """Record batches of `columns` from the Parquet dataset at `path`, at most BATCH_ROWS rows."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    pa.set_cpu_count(threads)
    pa.set_io_thread_count(threads)
    dataset = ds.dataset(path, format="parquet")
    return dataset.to_batches(columns=columns, batch_size=BATCH_ROWS)


def _matrix(batch, names):
    """The float32 C-contiguous [rows, features] matrix of a record batch's feature columns."""
    import numpy as np

    return np.ascontiguousarray(np.column_stack([batch.column(n).to_numpy() for n in names]),
                                dtype=np.float32)


def _score_to_parquet(peer, batches, names, score):
    """Scores each batch with `score(matrix) -> float32 vector` and writes id + prediction."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.int64()), ("prediction", pa.float32())])
    rows = 0
    with pq.ParquetWriter(peer.out_file, schema) as writer:
        for batch in batches:
            y = score(_matrix(batch, names))
            writer.write_batch(pa.record_batch([batch.column("id"), pa.array(y, pa.float32())], schema=schema))
            rows += batch.num_rows
    return rows


def _ort_session(path, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _ort_scorer(session, output, column):
    """A function matrix -> float32 vector: `output` of the graph, column `column` if 2-D."""
    input_name = session.get_inputs()[0].name

    def score(x):
        y = session.run([output], {input_name: x})[0]
        return y[:, column] if column is not None else y.reshape(-1)

    return score


# --- tabular peers ---------------------------------------------------------------------------

def run_decode(args):
    """pyarrow read_table of id + the feature columns and nothing else: the Parquet decode speed
    (threads = --threads) that scorch's floor job is measured against. Writes no output."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    peer = Peer(args)
    pa.set_cpu_count(args.threads)
    pa.set_io_thread_count(args.threads)
    peer.ready()
    table = pq.read_table(args.input, columns=["id"] + _features(args.features), use_threads=True)
    peer.finish(table.num_rows)


def run_ort(args):
    """pyarrow + onnxruntime: scan batches, run the ONNX graph, write with ParquetWriter."""
    peer = Peer(args)
    session = _ort_session(args.model, args.threads)
    names = _features(args.features)
    peer.ready()
    rows = _score_to_parquet(peer, _arrow_batches(args.input, ["id"] + names, args.threads), names,
                             _ort_scorer(session, args.onnx_output, args.onnx_column))
    peer.finish(rows)


def _torch_mlp(package):
    """The scorch mlp package as a torch.nn.Sequential (Linear layers plus activations)."""
    import tomllib

    import torch
    from safetensors.torch import load_file

    with open(os.path.join(package, "model.toml"), "rb") as f:
        spec = tomllib.load(f)["mlp"]
    acts = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}
    widths, layers = spec["layers"], []
    for i, act in enumerate(spec["activations"]):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if act != "linear":
            layers.append(acts[act]())
    net = torch.nn.Sequential(*layers)
    tensors = load_file(os.path.join(package, spec["weights"]))
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linears):
        lin.weight.data.copy_(tensors[f"layers.{i}.weight"])
        lin.bias.data.copy_(tensors[f"layers.{i}.bias"])
    return net.eval()


def run_torch(args):
    """PyTorch: pyarrow batches into torch tensors, the MLP under inference_mode."""
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    peer = Peer(args)
    net = _torch_mlp(args.model)
    names = _features(args.features)
    peer.ready()

    def score(x):
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy().reshape(-1)

    rows = _score_to_parquet(peer, _arrow_batches(args.input, ["id"] + names, args.threads), names, score)
    peer.finish(rows)


def run_xgboost(args):
    """XGBoost: Booster.inplace_predict on pyarrow batches (nthread = --threads)."""
    import xgboost as xgb

    peer = Peer(args)
    booster = xgb.Booster(model_file=os.path.join(args.model, "model.json"))
    booster.set_param({"nthread": args.threads})
    names = _features(args.features)
    peer.ready()
    rows = _score_to_parquet(peer, _arrow_batches(args.input, ["id"] + names, args.threads), names,
                             lambda x: booster.inplace_predict(x))
    peer.finish(rows)


def run_lightgbm(args):
    """LightGBM: Booster.predict on pyarrow batches (num_threads = --threads)."""
    import lightgbm as lgb

    peer = Peer(args)
    booster = lgb.Booster(model_file=os.path.join(args.model, "model.txt"))
    names = _features(args.features)
    peer.ready()
    rows = _score_to_parquet(peer, _arrow_batches(args.input, ["id"] + names, args.threads), names,
                             lambda x: booster.predict(x, num_threads=args.threads))
    peer.finish(rows)


def run_duckdb_ort(args):
    """DuckDB + onnxruntime: DuckDB scans the Parquet files and writes the result with COPY;
    the model runs in a vectorized (Arrow) Python UDF that DuckDB calls on each chunk (2,048
    rows) from its worker threads in parallel, the row's features packed into one FLOAT[]."""
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from duckdb import sqltypes

    peer = Peer(args)
    names = _features(args.features)
    # DuckDB calls the UDF from its --threads worker threads at once: one ORT thread per call.
    session = _ort_session(args.model, 1)
    score = _ort_scorer(session, args.onnx_output, args.onnx_column)

    def predict(features):
        values = pc.list_flatten(features).to_numpy()
        x = np.ascontiguousarray(values.reshape(-1, len(names)), dtype=np.float32)
        return pa.array(score(x), pa.float32())

    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.create_function("predict", predict, [duckdb.list_type(sqltypes.FLOAT)], sqltypes.FLOAT, type="arrow")
    peer.ready()
    source = os.path.join(args.input, "*.parquet").replace("'", "''")
    target = peer.out_file.replace("'", "''")
    rows = con.execute(
        f"COPY (SELECT id, predict(list_value({', '.join(names)})) AS prediction "
        f"FROM read_parquet('{source}')) TO '{target}' (FORMAT parquet, COMPRESSION snappy)").fetchone()[0]
    peer.finish(rows)


# --- PySpark peers ---------------------------------------------------------------------------

def _spark(args, app):
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{args.threads}]").appName(app)
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _spark_score(args, app, make_scorer):
    """Reads --input, scores it with an iterator pandas_udf whose scorer `make_scorer()`
    builds once per task (1 thread each: Spark runs --threads tasks at once), writes --output."""
    from typing import Iterator, Tuple

    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    peer = Peer(args)
    spark = _spark(args, app)
    names = _features(args.features)

    @pandas_udf("float")
    def predict(batches: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.Series]:
        import numpy as np

        score = make_scorer()
        for columns in batches:
            x = np.ascontiguousarray(np.column_stack([c.to_numpy() for c in columns]), dtype=np.float32)
            yield pd.Series(score(x), dtype="float32")

    peer.ready()
    df = spark.read.parquet(args.input)
    df.select("id", predict(*[F.col(n) for n in names]).alias("prediction")) \
        .write.mode("overwrite").parquet(args.output)
    spark.stop()
    peer.finish(None)


def run_spark_ort(args):
    """PySpark (local mode) + onnxruntime in a pandas_udf, one ORT thread per task."""
    model, output, column = args.model, args.onnx_output, args.onnx_column

    def make_scorer():
        return _ort_scorer(_ort_session(model, 1), output, column)

    _spark_score(args, "scorch-bench-ort", make_scorer)


def run_spark_xgboost(args):
    """PySpark (local mode) + xgboost inplace_predict in a pandas_udf, nthread 1 per task."""
    model_file = os.path.join(args.model, "model.json")

    def make_scorer():
        import xgboost as xgb

        booster = xgb.Booster(model_file=model_file)
        booster.set_param({"nthread": 1})
        return booster.inplace_predict

    _spark_score(args, "scorch-bench-xgboost", make_scorer)


def run_spark_lightgbm(args):
    """PySpark (local mode) + LightGBM predict in a pandas_udf, num_threads 1 per task."""
    model_file = os.path.join(args.model, "model.txt")

    def make_scorer():
        import lightgbm as lgb

        booster = lgb.Booster(model_file=model_file)
        return lambda x: booster.predict(x, num_threads=1)

    _spark_score(args, "scorch-bench-lightgbm", make_scorer)


# --- embedding peers -------------------------------------------------------------------------

def _write_embeddings(peer, batches, embed):
    """Embeds each batch's texts with `embed(list[str]) -> float32 [n, dim]`, writes id + vector."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, rows = None, 0
    try:
        for batch in batches:
            vectors = embed(batch.column("text").to_pylist())
            dim = vectors.shape[1]
            column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
            out = pa.record_batch([batch.column("id"), column], names=["id", "prediction"])
            if writer is None:
                writer = pq.ParquetWriter(peer.out_file, out.schema, use_dictionary=False)
            writer.write_batch(out)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def run_sentence_transformers(args):
    """sentence-transformers on the CPU: SentenceTransformer.encode per record batch (it sorts
    each call's texts by length); the model's Normalize module L2-normalizes."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    peer = Peer(args)
    model = SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = MAX_LENGTH
    peer.ready()

    def embed(texts):
        return np.asarray(model.encode(texts, batch_size=EMBED_BATCH, convert_to_numpy=True), dtype=np.float32)

    rows = _write_embeddings(peer, _arrow_batches(args.input, ["id", "text"], args.threads), embed)
    peer.finish(rows)


def run_ort_embed(args):
    """onnxruntime + tokenizers: the BERT encoder exported to ONNX; texts tokenized with the
    model's tokenizer.json (truncated to 256 tokens), sorted by length, padded per batch of 64;
    mean pooling over the attention mask and L2 normalization in numpy."""
    import numpy as np
    from tokenizers import Tokenizer

    peer = Peer(args)
    tokenizer = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_LENGTH)
    session = _ort_session(args.model, args.threads)
    peer.ready()

    def embed(texts):
        encodings = tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = None
        for start in range(0, len(order), EMBED_BATCH):
            idx = order[start:start + EMBED_BATCH]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                e = encodings[i]
                n = len(e.ids)
                ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
            hidden = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                                         "token_type_ids": types})[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        return out

    rows = _write_embeddings(peer, _arrow_batches(args.input, ["id", "text"], args.threads), embed)
    peer.finish(rows)


PEERS = {
    "ort": run_ort,
    "torch": run_torch,
    "xgboost": run_xgboost,
    "lightgbm": run_lightgbm,
    "duckdb-ort": run_duckdb_ort,
    "spark-ort": run_spark_ort,
    "spark-xgboost": run_spark_xgboost,
    "spark-lightgbm": run_spark_lightgbm,
    "sentence-transformers": run_sentence_transformers,
    "ort-embed": run_ort_embed,
    "decode": run_decode,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--input", required=True, help="Parquet dataset folder")
    parser.add_argument("--output", required=True, help="output folder (created)")
    parser.add_argument("--model", required=True, help="model file or folder")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--report", required=True, help="JSON file for the peer's own timings")
    parser.add_argument("--features", type=int, default=0, help="feature columns f0..f{K-1}")
    parser.add_argument("--onnx-output", default=None, help="ONNX graph output holding the score")
    parser.add_argument("--onnx-column", type=int, default=None, help="column of a 2-D ONNX output")
    parser.add_argument("--tokenizer", default=None, help="folder holding tokenizer.json")
    args = parser.parse_args()
    PEERS[args.peer](args)


if __name__ == "__main__":
    main()
