"""A broken environment gets one clear line: Java or Maven missing, Maven Central unreachable, no Redis."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from devstack import kafka, redis
from devstack.errors import StackError


def _tool(folder: Path, name: str, script: str = "exit 0") -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("APISYNC_CACHE_DIR", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_missing_java_is_named(empty_cache):
    with pytest.raises(StackError, match=r"^Java 17\+ is missing: install it"):
        kafka.resolve_libs()


def test_missing_maven_is_named(empty_cache):
    _tool(empty_cache, "java")
    with pytest.raises(StackError, match=r"^Maven is missing: install it"):
        kafka.resolve_libs()


def test_unreachable_maven_central_is_one_line(empty_cache):
    _tool(empty_cache, "java")
    refusal = "[ERROR] Could not transfer artifact org.apache.kafka:kafka_2.13:pom:4.1.1"
    _tool(empty_cache, "mvn", f'echo "{refusal}"\nexit 1')
    with pytest.raises(StackError) as raised:
        kafka.resolve_libs()
    message = str(raised.value)
    assert message.startswith("could not fetch the Kafka 4.1.1 jars from Maven Central")
    assert "Could not transfer artifact" in message and "\n" not in message


def test_cached_jars_are_reused_without_maven(empty_cache):
    libs = kafka.libs_dir()
    libs.mkdir(parents=True)
    (libs / ".complete").touch()
    assert kafka.resolve_libs() == libs  # no java, no mvn on PATH: nothing was run


def test_missing_redis_without_root_says_how_to_install(monkeypatch):
    monkeypatch.setattr(redis.shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(StackError, match=r"^redis-server is missing: install it with `sudo apt-get install"):
        redis.ensure_installed()
