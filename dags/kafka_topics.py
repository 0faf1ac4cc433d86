"""kafka_topics: apply the topic contracts (create missing topics, repair drifted configs)."""

from apisync_airflow.factory import DagDefaults, topics_dag

kafka_topics = topics_dag(DagDefaults.from_env())
