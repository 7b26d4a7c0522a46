"""Loads examples/airflow with real Airflow and drives its task callable against the real scorch
binary. Prints, as the last line of stdout, JSON: the DagBag's import errors, the DAG's tasks,
and for each case the outcome of run_scorch (the returned manifest's status, or the exception
type raised).

    airflow_check.py <dag folder> <scorch binary> <ds> <case>=<job file> ...
"""
import json
import os
import sys
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

from airflow.exceptions import AirflowException, AirflowFailException  # noqa: E402
from airflow.models import DagBag  # noqa: E402

folder, scorch, ds = sys.argv[1:4]
jobs = [arg.split("=", 1) for arg in sys.argv[4:]]
bag = DagBag(dag_folder=folder, include_examples=False)
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {"tasks": [t.task_id for t in dag.tasks],
                           "retries": dag.default_args.get("retries")}

dag = bag.dags.get("churn_scores")
cases = {}
if dag is not None:
    callable_ = dag.get_task("score").python_callable
    for name, job in jobs:
        try:
            manifest = callable_(job, ds, scorch=scorch)
            cases[name] = {"returned": manifest.get("status"), "rows": manifest.get("rows")}
        except AirflowFailException as e:
            cases[name] = {"raised": "AirflowFailException", "message": str(e)}
        except AirflowException as e:
            cases[name] = {"raised": "AirflowException", "message": str(e)}
out["cases"] = cases
sys.stdout.write("\n" + json.dumps(out) + "\n")
