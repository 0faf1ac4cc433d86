"""Create apisync's Airflow pools through the api-server: compose's one-shot `airflow-pools` service.

The same code as the dev stack (apisync_airflow.pools.ensure_pools), as the admin user of Airflow's simple
auth manager, whose generated password the api-server writes to the passwords file in the shared config
folder.
"""

from __future__ import annotations

import json
import os
import sys

import httpx

from apisync_airflow.pools import ensure_pools


def admin_user(users: str) -> str:
    """The first user with the admin role in AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS ("name:role,...")."""
    for entry in users.split(","):
        name, _, role = entry.strip().partition(":")
        if role.split(":")[0] == "admin":
            return name
    raise SystemExit(f"no admin user in {users!r}: pools need one")


def admin_client(url: str, user: str, passwords_file: str) -> httpx.Client:
    """A REST API client (base <url>/api/v2) holding the admin's token."""
    with open(passwords_file) as file:
        password = json.load(file)[user]
    answer = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
    answer.raise_for_status()
    return httpx.Client(base_url=f"{url}/api/v2", timeout=30,
                        headers={"Authorization": f"Bearer {answer.json()['access_token']}"})


def main() -> int:
    """Create or update every pool the DAGs use; print their names."""
    user = admin_user(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin"))
    with admin_client(os.environ["APISYNC_AIRFLOW_URL"], user,
                      os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]) as client:
        print("pools:", ", ".join(ensure_pools(client)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
