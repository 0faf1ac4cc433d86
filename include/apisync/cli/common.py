"""What every `python -m apisync` command shares: Kafka and Redis from options or the environment, and
an API account from APISYNC_<API>_* variables (never from arguments, which `ps` shows to everyone)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from apisync.connections import extras_from_env
from apisync.registry import APIS, spec_for
from apisync.settings import ApiSettings

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
API_CHOICES = APIS


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts, before or after the command words (pass as parents=[...])."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a sub-command without --bootstrap must not overwrite one given before it.
    common.add_argument("--bootstrap", default=argparse.SUPPRESS,
                        help=f"Kafka bootstrap servers (env APISYNC_KAFKA_BOOTSTRAP, default {DEFAULT_BOOTSTRAP})")
    common.add_argument("--kafka-config", metavar="FILE", default=argparse.SUPPRESS,
                        help="full Kafka client config, JSON or properties: SASL, TLS, OAuth (env APISYNC_KAFKA_CONFIG;"
                             " APISYNC_KAFKA_<SETTING> variables override it, e.g. APISYNC_KAFKA_SASL_PASSWORD)")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds to wait for Kafka per call (default {DEFAULT_TIMEOUT_S:.0f})")
    return common


def timeout(args: argparse.Namespace) -> float:
    """Per-call Kafka timeout from --timeout."""
    return getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S


def kafka_config(args: argparse.Namespace) -> dict:
    """Client config from --kafka-config (or APISYNC_KAFKA_CONFIG), APISYNC_KAFKA_* and --bootstrap, layered."""
    from apisync.kafka.config_loader import load_kafka_config

    return load_kafka_config(getattr(args, "kafka_config", None), bootstrap=getattr(args, "bootstrap", None),
                             default_bootstrap=DEFAULT_BOOTSTRAP)


def redis_url() -> str:
    """APISYNC_REDIS_URL, else the local default."""
    return os.environ.get("APISYNC_REDIS_URL", DEFAULT_REDIS_URL)


def has_api_account(api: str, env: Mapping[str, str] = os.environ) -> bool:
    """Whether APISYNC_<API>_URL is set (the normalizer can then re-fetch)."""
    return bool(env.get(f"APISYNC_{api.upper()}_URL"))


def api_settings_from_env(api: str, env: Mapping[str, str] = os.environ) -> ApiSettings:
    """ApiSettings from APISYNC_<API>_* variables (URL, TOKEN, RATE and the extras the API's spec maps from
    its own, `ConnectionSpec.env_extras`); a missing one is a one-line error."""
    prefix = f"APISYNC_{api.upper()}_"
    missing = [name for name in ("URL", "TOKEN") if not env.get(prefix + name)]
    if missing:
        raise SystemExit(f"error: set {', '.join(prefix + m for m in missing)} to sync {api}")
    rate = env.get(prefix + "RATE")
    extra = extras_from_env(spec_for(api).connection, env, prefix)
    return ApiSettings(api, env[prefix + "URL"], env[prefix + "TOKEN"], extra, float(rate) if rate else None)
