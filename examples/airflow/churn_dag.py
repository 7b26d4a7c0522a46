"""Airflow DAG: score the day's churn features with scorch.

Airflow passes the logical date as {{ ds }}; scorch binds it as a typed DATE parameter.
Reruns and retries of the same interval replace that interval's output exactly, so
`retries` is safe. Exit codes 2, 3, 4 and 6 are not worth retrying (job, data, quality
gate, model); 5 (storage) and 7 (commit conflict) are.
"""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="churn_scores",
    start_date=datetime(2026, 11, 1),
    schedule="15 2 * * *",
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    BashOperator(
        task_id="score",
        bash_command=(
            "scorch --log-format json run /srv/scoring/jobs/churn.toml --param ds={{ ds }}"
        ),
    )
