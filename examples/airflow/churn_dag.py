"""Airflow DAG: score the day's churn features with scorch.

Airflow passes the logical date as {{ ds }}; scorch binds it as a typed DATE parameter. Reruns
and retries of the same interval replace that interval's output exactly, so retries are safe.

scorch's exit code decides what Airflow does (the README's table):
  0                  success; the run manifest (`run --json`) becomes the task's XCom
  2, 3, 4, 6         fail at once, no retry: job, data, quality gate or model errors need a person
  5, 7, 130, 143, 1  fail and retry: storage or cluster trouble, a commit conflict, a stopped run
Metrics go to a Pushgateway when SCORCH_PUSHGATEWAY is set in the worker's environment, and
OpenLineage events to SCORCH_LINEAGE (a collector's URL, or file:PATH).
"""
import json
import os
import subprocess
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.operators.python import PythonOperator

SCORCH = os.environ.get("SCORCH_BIN", "scorch")
JOB = os.environ.get("SCORCH_CHURN_JOB", "/srv/scoring/jobs/churn.toml")

# Exit codes a retry cannot fix: the job, the data, a quality gate or the model needs a person.
NO_RETRY = {2: "job error", 3: "input data error", 4: "quality gate failed", 6: "model error"}


def run_scorch(job, ds, scorch=SCORCH):
    """Runs `scorch run <job> --param ds=<ds> --json`; returns the run manifest, or raises what
    Airflow should do with the failure."""
    command = [scorch, "--log-format", "json", "run", job, "--param", f"ds={ds}", "--json"]
    pushgateway = os.environ.get("SCORCH_PUSHGATEWAY")
    if pushgateway:
        command += ["--pushgateway", pushgateway]
    lineage = os.environ.get("SCORCH_LINEAGE")  # an OpenLineage collector, or file:PATH
    if lineage:
        command += ["--lineage", lineage]
    # stderr (one JSON log object per line) goes to the task log as it comes.
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    try:
        report = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        report = {"output": result.stdout}
    code = result.returncode
    if code == 0:
        return report
    detail = report.get("error") or report.get("status") or ""
    if code in NO_RETRY:
        raise AirflowFailException(f"scorch exited {code} ({NO_RETRY[code]}): {detail}")
    raise AirflowException(f"scorch exited {code}, worth a retry: {detail}")


with DAG(
    dag_id="churn_scores",
    start_date=datetime(2026, 11, 1),
    schedule="15 2 * * *",
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    PythonOperator(
        task_id="score",
        python_callable=run_scorch,
        op_kwargs={"job": JOB, "ds": "{{ ds }}"},
    )
