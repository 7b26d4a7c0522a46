"""scorch job files for the benchmark, generated into benches/data/jobs/.

Each job reads one dataset folder, scores it with one model (pinned by its package hash, as a
production job would be) and writes id + prediction to its own output table under
benches/data/out/. Paths in the job are relative to the job file, as scorch resolves them. The
floor jobs call no model: their "prediction" is the sum of every feature, so they scan exactly
the columns the model jobs scan and measure scan + stamp + commit + write alone.
"""
import os
import subprocess

from common import JOBS_DIR


def package_hash(scorch, package):
    """The package's SHA-256 as `scorch model hash` prints it."""
    result = subprocess.run([scorch, "model", "hash", package], check=True, capture_output=True, text=True)
    return result.stdout.strip()


def write_job(scorch, *, name, source, output, threads, model=None, package=None, inputs=(), embed=False,
              output_format="delta"):
    """Writes benches/data/jobs/<name>.toml and returns its path.

    `model`/`package`: the model's name and package folder (None for a floor job); `inputs`: the
    feature columns passed to predict (or summed by a floor job); `embed`: embed(text) instead;
    `output_format`: the output table's format (a Delta table, or the Parquet mode).
    """
    os.makedirs(JOBS_DIR, exist_ok=True)

    def from_jobs(path):
        return os.path.relpath(path, JOBS_DIR)

    if embed:
        expr = f"embed('{model}', text)"
    elif model:
        expr = f"predict('{model}', {', '.join(inputs)})"
    else:
        expr = " + ".join(inputs)
    lines = [
        "[job]", f'name = "bench_{name}"', "",
        "[sources.features]", f'url = "{from_jobs(source)}"', "",
    ]
    if model:
        lines += [f"[models.{model}]", f'uri = "{from_jobs(package)}"',
                  f'sha256 = "{package_hash(scorch, package)}"', ""]
    lines += [
        "[query]", f'sql = "SELECT id, {expr} AS prediction FROM features"', "",
        "[output]", f'url = "{from_jobs(output)}"', f'format = "{output_format}"', "",
        "[execution]", f"target_partitions = {threads}", "device = \"cpu\"", "",
    ]
    path = os.path.join(JOBS_DIR, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path

