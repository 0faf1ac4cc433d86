"""devstack's PostgreSQL (Airflow's metadata DB in make test-scale): unprivileged, password-only, leaves nothing."""

import os

import psutil
import psycopg2
import pytest

from devstack.postgres import PostgresServer

pytestmark = pytest.mark.integration


def test_cluster_runs_unprivileged_on_loopback_with_a_password_and_is_removed_on_stop(tmp_path):
    server = PostgresServer(tmp_path / "pg").start()
    try:
        data = server.data
        postmaster = psutil.Process(server.process.pid)
        assert postmaster.uids().real != 0 or os.geteuid() != 0  # never root: initdb and postgres refuse it
        with psycopg2.connect(server.sqlalchemy_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone() == ("127.0.0.1",)
            cur.execute("SELECT current_database()")
            assert cur.fetchone() == ("airflow",)
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(host="127.0.0.1", port=server.port, user=server.role, password="wrong",
                             dbname="airflow", connect_timeout=5)
        assert server.password not in (tmp_path / "pg" / "postgres.log").read_text()
    finally:
        server.stop()
    assert not data.exists()
    assert not psutil.pid_exists(postmaster.pid) or postmaster.status() == psutil.STATUS_ZOMBIE
