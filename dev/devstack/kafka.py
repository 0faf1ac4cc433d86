"""Apache Kafka from the official jars on Maven Central, run as a local KRaft cluster.

One node (broker + controller) by default; three for replication and failover tests. With `sasl_users`
each node also listens on a SASL_PLAINTEXT listener (mechanism PLAIN, those users and passwords,
loopback only) beside its PLAINTEXT one, which stays for the controller and inter-broker traffic;
clients that should authenticate connect to `sasl_bootstrap`. With `tls=True` as well, each node also
listens on SASL_SSL (mechanism SCRAM-SHA-512, the same users, a certificate from a CA made at start-up
by `devstack.tls`): clients connect to `sasl_ssl_bootstrap` and trust `ca_file`. Off by default: the
default stack is unchanged.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError
from devstack.paths import RESOURCES, cache_dir
from devstack.process import ManagedProcess, free_port, port_open, wait_until
from devstack.tls import TlsFiles, make_tls_files

KAFKA_VERSION = "4.1.1"
SCRAM_MECHANISM = "SCRAM-SHA-512"
_POM = RESOURCES / "kafka" / "pom.xml"
_LOG4J = RESOURCES / "kafka" / "log4j2.properties"


def libs_dir() -> Path:
    """The folder holding the broker's jars (resolved on first use)."""
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def resolve_libs() -> Path:
    """Fetch kafka_2.13 and its runtime dependencies with Maven once; later calls reuse the cache."""
    target = libs_dir()
    if (target / ".complete").exists():
        return target
    _require_tool("java", "Java 17+ is missing: install it (apt-get install openjdk-17-jre-headless)")
    _require_tool("mvn", "Maven is missing: install it (apt-get install maven)")
    staging = target.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(_POM), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={staging}", f"-Dkafka.version={KAFKA_VERSION}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        last = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"could not fetch the Kafka {KAFKA_VERSION} jars from Maven Central "
                         f"(is it reachable?): {last[0][:200]}")
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _require_tool(name: str, message: str) -> None:
    if shutil.which(name) is None:
        raise StackError(message)


@dataclass(frozen=True, slots=True)
class _Node:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    sasl_port: int | None = None
    sasl_ssl_port: int | None = None


class KafkaCluster:
    """A KRaft cluster of `size` combined broker+controller nodes on loopback."""

    def __init__(self, state: Path, size: int = 1, heap: str = "512m", ports: list[int] | None = None,
                 sasl_users: dict[str, str] | None = None, properties: dict[str, object] | None = None,
                 tls: bool = False) -> None:
        self.state = state
        self.properties = dict(properties or {})  # overrides of the broker properties below
        self.size = size
        self.heap = heap
        self.sasl_users = dict(sasl_users or {})
        if tls and not self.sasl_users:
            raise StackError("tls=True needs sasl_users: the TLS listener is SASL_SSL")
        self.tls: TlsFiles | None = make_tls_files(state / "tls") if tls else None
        ports = ports or [free_port() for _ in range(size)]
        self.nodes = [_Node(i + 1, ports[i], free_port(), state / f"node-{i + 1}",
                            free_port() if self.sasl_users else None, free_port() if tls else None)
                      for i in range(size)]
        self.processes: dict[int, ManagedProcess] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_PLAINTEXT (PLAIN) listeners; only with `sasl_users`."""
        if not self.sasl_users:
            raise StackError("this cluster was started without sasl_users: it has no SASL listener")
        return ",".join(f"127.0.0.1:{n.sasl_port}" for n in self.nodes)

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """The SASL_SSL (SCRAM-SHA-512) listeners; only with `tls=True`."""
        if self.tls is None:
            raise StackError("this cluster was started without tls=True: it has no SASL_SSL listener")
        return ",".join(f"127.0.0.1:{n.sasl_ssl_port}" for n in self.nodes)

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the SASL_SSL listeners' certificate (clients' `ssl.ca.location`)."""
        if self.tls is None:
            raise StackError("this cluster was started without tls=True: it has no CA")
        return self.tls.ca_file

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        libs = resolve_libs()
        cluster_id = self._cluster_id()
        for node in self.nodes:
            self._write_properties(node)
            self._format(libs, node, cluster_id)
        for node in self.nodes:
            self.start_node(node.node_id, wait=False)
        wait_until(lambda: self._brokers_up() == self.size, timeout, f"Kafka ({self.bootstrap})",
                   next(iter(self.processes.values())))
        if self.tls is not None:
            self._add_scram_users()
        return self

    def _add_scram_users(self) -> None:
        """SCRAM credentials for `sasl_users`, stored by the cluster itself (over the PLAINTEXT listener)."""
        from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        upserts = [UserScramCredentialUpsertion(name, info, password.encode())
                   for name, password in self.sasl_users.items()]
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(timeout=60)

    def start_node(self, node_id: int, wait: bool = True) -> None:
        """(Re)start one node; used for broker-restart tests."""
        node = self.nodes[node_id - 1]
        argv = ["java", f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={_LOG4J}", "-cp", f"{libs_dir()}/*",
                "kafka.Kafka", str(node.data_dir / "server.properties")]
        self.processes[node_id] = ManagedProcess(f"kafka-{node_id}", argv, self.state / f"kafka-{node_id}.log")
        if wait:
            wait_until(lambda: self._brokers_up() >= 1, 120, f"Kafka node {node_id}", self.processes[node_id])

    def stop_node(self, node_id: int, kill: bool = False) -> None:
        process = self.processes.pop(node_id)
        process.kill() if kill else process.stop()

    def stop(self) -> None:
        # All nodes at once: stopped one by one, the last ones lose the KRaft quorum and their
        # controlled shutdown waits out the whole grace period.
        with ThreadPoolExecutor(max_workers=max(1, len(self.processes))) as pool:
            list(pool.map(self.stop_node, list(self.processes)))

    def _cluster_id(self) -> str:
        # Reuse the id of an already formatted data dir so a restart keeps its topics.
        meta = self.nodes[0].data_dir / "data" / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1]
        while True:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not cluster_id.startswith("-"):  # the storage tool would read it as an option (Kafka skips these too)
                return cluster_id

    def _format(self, libs: Path, node: _Node, cluster_id: str) -> None:
        if (node.data_dir / "data" / "meta.properties").exists():
            return
        result = subprocess.run(
            ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={_LOG4J}", "-cp", f"{libs}/*",
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(node.data_dir / "server.properties")],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {(result.stderr or result.stdout).strip()[:300]}")

    def _write_properties(self, node: _Node) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        replication = min(3, self.size)
        props = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": node.data_dir / "data",
            "num.partitions": 1,
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min(2, self.size),
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": 1,
            "default.replication.factor": replication,
            "min.insync.replicas": min(2, self.size),
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",
            # Compaction must be able to run within a test, not only after days.
            "log.cleaner.backoff.ms": 1000,
        }
        if self.sasl_users:
            props.update(self._sasl_properties(node))
        props.update(self.properties)
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        path = node.data_dir / "server.properties"
        path.touch(mode=0o600)  # it may hold the SASL users' passwords
        os.chmod(path, 0o600)
        path.write_text(text)

    def _sasl_properties(self, node: _Node) -> dict[str, str]:
        """A SASL_PLAINTEXT listener with PLAIN and a JAAS user list (and with TLS a SASL_SSL one with SCRAM);
        PLAINTEXT stays inter-broker."""
        for name, password in self.sasl_users.items():
            if not name.isidentifier() or '"' in password or "\\" in password:
                raise StackError(f"SASL user {name!r}: names must be identifiers, passwords without quotes")
        users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users.items())
        client = {"SASL_PLAINTEXT": node.sasl_port}
        if self.tls is not None:
            client["SASL_SSL"] = node.sasl_ssl_port
        extra = "".join(f",{name}://127.0.0.1:{port}" for name, port in client.items())
        props = {
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}{extra}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}{extra}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
                                              + "".join(f",{name}:{name}" for name in client),
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
        }
        if self.tls is not None:
            props.update(self._sasl_ssl_properties())
        return props

    def _sasl_ssl_properties(self) -> dict[str, str]:
        """SCRAM-SHA-512 over TLS; the broker's key and certificate chain from one PEM file."""
        mechanism = SCRAM_MECHANISM.lower()
        return {
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.server_keystore),
        }

    def _brokers_up(self) -> int:
        # A TCP probe first: librdkafka clients pointed at a closed port log a line every 50 ms.
        if not all(port_open(n.port) for n in self.nodes if n.node_id in self.processes):
            return 0
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 3})
        return len(admin.list_topics(timeout=3).brokers)
