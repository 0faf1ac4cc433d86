"""Where devstack keeps downloaded jars (cache) and service data (state)."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The folder holding api_simulator and devstack: on the path of dev processes only, never of Airflow's.
DEV_ROOT = PROJECT_ROOT / "dev"
RESOURCES = Path(__file__).resolve().parent / "resources"


def cache_dir() -> Path:
    """Downloads that survive between runs (the Kafka jars); APISYNC_CACHE_DIR overrides."""
    return Path(os.environ.get("APISYNC_CACHE_DIR", PROJECT_ROOT / ".cache"))


def state_dir() -> Path:
    """Data and logs of the local services; APISYNC_STATE_DIR overrides."""
    return Path(os.environ.get("APISYNC_STATE_DIR", PROJECT_ROOT / ".stack"))
