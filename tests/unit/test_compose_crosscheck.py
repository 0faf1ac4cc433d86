"""docker-compose.yaml against the code it runs (no Docker engine here): what a `docker compose up` needs.

Each image installs every module its services' entry points import; every connection and pool the DAGs
use exists; no Airflow-image service can reach the simulator or the dev stack (dev/); the Kafka variables
are the ones the apache/kafka image documents, with the data inside the mounted volume; and the replicated
setup keeps a controller quorum and every partition after losing a node.
Each check is a function of the parsed files, so the tests below also feed it each known defect.
"""

from __future__ import annotations

import ast
import base64
import copy
import importlib.metadata
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REPLICATED_ENV = ROOT / "docker" / "replicated.env"
AIRFLOW_HOME = "/opt/airflow"
# What a base image brings before the Dockerfile installs anything (the official Airflow image: Airflow).
BASE_IMAGE_DISTRIBUTIONS = {"apache/airflow": ("apache-airflow",), "python": ()}


# ---- compose: interpolation and profiles -----------------------------------------------------------------

def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as Compose reads an --env-file (comments and blank lines skipped)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$ over every string of a parsed file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name"), match.group("op"), match.group("default") or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return _VARIABLE.sub(one, value)


def active_services(compose: dict, env: dict[str, str]) -> dict[str, dict]:
    """The services `docker compose up` starts with this environment (COMPOSE_PROFILES), interpolated."""
    profiles = {p for p in env.get("COMPOSE_PROFILES", "").split(",") if p}
    services = interpolate(compose, env)["services"]
    return {name: service for name, service in services.items()
            if not service.get("profiles") or profiles & set(service["profiles"])}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


# ---- Dockerfiles -------------------------------------------------------------------------------------------

@dataclass
class Image:
    """What a Dockerfile leaves in its image that matters here."""

    base: str
    env: dict[str, str] = field(default_factory=dict)
    copies: dict[str, Path] = field(default_factory=dict)  # container path → repo path
    requirements: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    lines = (line.strip() for line in joined.splitlines())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#") and " " in line]


def parse_dockerfile(path: Path) -> Image:
    """FROM, ENV, COPY, `pip install` (packages and -r files copied in) and CMD of one Dockerfile."""
    image = Image(base="")
    for verb, args in _instructions(path.read_text()):
        if verb == "FROM":
            image.base = args.split(":")[0]
        elif verb == "ENV":
            key, _, value = args.partition("=") if "=" in args.split()[0] else args.partition(" ")
            image.env[key.strip()] = value.strip()
        elif verb == "COPY":
            *sources, target = shlex.split(args)
            image.copies[target] = ROOT / sources[0]
        elif verb == "RUN":
            image.requirements += _pip_installs(args, image.copies)
        elif verb == "CMD":
            image.cmd = yaml.safe_load(args)
    return image


def _pip_installs(run: str, copies: dict[str, Path]) -> list[str]:
    installed = []
    for command in re.split(r"&&|;", run):
        words = shlex.split(command)
        if "install" not in words or "pip" not in " ".join(words[:words.index("install")]):
            continue
        args = iter(words[words.index("install") + 1:])
        for word in args:
            if word == "-r":
                installed += read_requirements(copies[next(args)])
            elif not word.startswith("-"):
                installed.append(word)
    return installed


def read_requirements(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def service_image(service: dict) -> Image | None:
    build = service.get("build")
    return parse_dockerfile(ROOT / build["context"] / build["dockerfile"]) if build else None


# ---- what an image installs: the requirements with everything they depend on --------------------------------

@cache
def _requires(distribution: str) -> tuple[str, ...]:
    try:
        return tuple(importlib.metadata.distribution(distribution).requires or ())
    except importlib.metadata.PackageNotFoundError:
        return ()


@cache
def _requirement(text: str) -> Requirement:
    return Requirement(text)


@cache
def installed_distributions(requirements: tuple[str, ...]) -> frozenset[str]:
    """The requirements and their dependency closure (as pip resolves it, read from this venv's metadata)."""
    seen: set[tuple[str, str]] = set()
    work = [(_requirement(text), "") for text in requirements]
    while work:
        requirement, extra = work.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        for wanted in ("", *requirement.extras):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            work += [(_requirement(dep), wanted) for dep in _requires(name)]
    return frozenset(name for name, _ in seen)


@cache
def _module_distributions() -> dict[str, tuple[str, ...]]:
    return {module: tuple(canonicalize_name(d) for d in dists)
            for module, dists in importlib.metadata.packages_distributions().items()}


# ---- what an entry point imports ------------------------------------------------------------------------------

@dataclass
class ImportScan:
    third_party: dict[str, str] = field(default_factory=dict)  # top-level module → first file importing it
    optional: set[str] = field(default_factory=set)  # imported only where ImportError is caught


def _catches_import_error(node: ast.Try) -> bool:
    return any(h.type is not None and re.search(r"ImportError|ModuleNotFoundError", ast.unparse(h.type))
               for h in node.handlers)


@cache
def _imports(path: Path, package: str) -> list[tuple[str, bool]]:
    """(dotted name, optional) for every import in a file; `from a import b` also yields a.b."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes, optional_here = node.orelse, optional  # type-only imports never run
        elif isinstance(node, ast.Try):
            for child in node.body:
                visit(child, optional or _catches_import_error(node))
            nodes, optional_here = node.handlers + node.orelse + node.finalbody, optional
        else:
            nodes, optional_here = list(ast.iter_child_nodes(node)), optional
            found.extend((name, optional) for name in _names(node, package))
        for child in nodes:
            visit(child, optional_here)

    visit(ast.parse(path.read_text()), False)
    return found


def _names(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        parts = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
        module = ".".join([*parts, *([node.module] if node.module else [])])
        return [module, *(f"{module}.{alias.name}" for alias in node.names)]
    # importlib.import_module("name"): a literal name counts like an import statement
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func
        if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")) == "import_module":
            return [str(node.args[0].value)]
    return []


@cache
def _local_file(dotted: str, search: tuple[Path, ...]) -> Path | None:
    for folder in search:
        base = folder.joinpath(*dotted.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def scan_imports(entry_files: list[tuple[Path, str]], search: list[Path]) -> ImportScan:
    """Follow imports from the entry files through the local code (search folders); collect the rest."""
    scan, seen, work = ImportScan(), set(), list(entry_files)
    while work:
        path, package = work.pop()
        if path in seen:
            continue
        seen.add(path)
        for dotted, optional in _imports(path, package):
            top = dotted.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            if _is_local(top, tuple(search)):
                work += _local_modules(dotted, tuple(search))
            elif optional:
                scan.optional.add(top)
            else:
                scan.third_party.setdefault(top, str(path.relative_to(ROOT)))
    return scan


@cache
def _is_local(top: str, search: tuple[Path, ...]) -> bool:
    return any((folder / top).is_dir() or (folder / f"{top}.py").is_file() for folder in search)


def _local_modules(dotted: str, search: tuple[Path, ...]) -> list[tuple[Path, str]]:
    parts, modules = dotted.split("."), []
    for end in range(1, len(parts) + 1):
        name = ".".join(parts[:end])
        if (found := _local_file(name, search)) is not None:
            modules.append((found, name if found.name == "__init__.py" else ".".join(parts[:end - 1])))
    return modules


# ---- a service: its code on disk and where it starts ------------------------------------------------------------

def _mounts(service: dict, image: Image | None) -> dict[str, Path]:
    """Container path → repo path, from bind mounts and the image's COPY lines."""
    mounts = dict(image.copies) if image else {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = ROOT / source
    return mounts


def _on_disk(container_path: str, mounts: dict[str, Path]) -> Path | None:
    for target, source in sorted(mounts.items(), key=lambda item: -len(item[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target):].lstrip("/")
    return None


def entry_points(service: dict, image: Image) -> tuple[list[tuple[Path, str]], list[Path]]:
    """(entry files with their package, the module search folders) of one service, on disk."""
    mounts = _mounts(service, image)
    pythonpath = environment(service).get("PYTHONPATH") or image.env.get("PYTHONPATH", "")
    search = [path for entry in pythonpath.split(":") if entry and (path := _on_disk(entry, mounts))]
    argv = [*_as_list(service.get("entrypoint")), *_as_list(service.get("command"))] or image.cmd
    if argv[:2] == ["python", "-m"]:
        module = argv[2]
        main = _local_file(f"{module}.__main__", tuple(search)) or _local_file(module, tuple(search))
        return [(main, module)], search
    if argv and argv[0] == "python" and argv[1].endswith(".py"):
        script = _on_disk(argv[1], mounts)
        return [(script, "")], [script.parent, *search]
    if image.base == "apache/airflow":  # an Airflow component: it loads the DAG files and the plugins
        dags, plugins = _on_disk(f"{AIRFLOW_HOME}/dags", mounts), _on_disk(f"{AIRFLOW_HOME}/plugins", mounts)
        files = [(path, "") for path in sorted(dags.glob("*.py"))]
        files += [(path, path.parent.name) for path in sorted(plugins.glob("*/*.py"))]
        return files, [dags, plugins, *search]
    raise AssertionError(f"no Python entry point recognised in {argv}")


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else list(value)


def missing_modules(services: dict[str, dict]) -> list[str]:
    """`service: module (imported by file)` for each module an entry point needs that its image lacks."""
    problems = []
    for name, service in services.items():
        image = service_image(service)
        if image is None:
            continue
        files, search = entry_points(service, image)
        scan = scan_imports(files, search)
        installed = installed_distributions((*BASE_IMAGE_DISTRIBUTIONS[image.base], *image.requirements))
        for module, importer in sorted(scan.third_party.items()):
            if module in scan.optional:
                continue  # the code catches its absence where it first needs it
            if not set(_module_distributions().get(module, ())) & installed:
                problems.append(f"{name}: {module} (imported by {importer})")
    return problems


# ---- connections and pools the DAGs use ---------------------------------------------------------------------------

@cache
def dag_needs() -> tuple[frozenset[str], frozenset[str]]:
    """(connection ids, pool names) every task and asset watcher of the DAG folder uses."""
    from airflow.dag_processing.dagbag import DagBag

    from apisync_airflow.hooks import ApiConnectionHook

    bag = DagBag(dag_folder=str(ROOT / "dags"), safe_mode=False)
    assert bag.import_errors == {}
    connections, pools = set(), set()
    for dag in bag.dags.values():
        for task in dag.tasks:
            pools.add(task.pool)
            connections |= {getattr(task, attr) for attr in ("kafka_conn_id", "redis_conn_id") if hasattr(task, attr)}
            if hasattr(task, "api"):
                connections.add(ApiConnectionHook(task.api, getattr(task, "api_conn_id", None)).api_conn_id)
            for asset in [*task.inlets, *task.outlets]:
                connections |= {w.trigger.serialize()[1]["kafka_config_id"] for w in getattr(asset, "watchers", [])}
    return frozenset(connections), frozenset(pools - {"default_pool"})


def missing_connections(services: dict[str, dict]) -> list[str]:
    """`service: conn_id` for each connection the DAGs use that an Airflow service has no AIRFLOW_CONN_ for."""
    connections, _ = dag_needs()
    return [f"{name}: {conn_id}" for name, service in services.items()
            if name in ("airflow-worker", "airflow-triggerer", "airflow-scheduler")
            for conn_id in sorted(connections) if f"AIRFLOW_CONN_{conn_id.upper()}" not in environment(service)]


def pools_problems(services: dict[str, dict]) -> list[str]:
    """Why the DAGs' pools would not exist: no one-shot service runs ensure_pools, or it misses a pool."""
    from apisync_airflow.pools import declared_pools

    _, used = dag_needs()
    problems = [f"pool {pool} is not declared in apisync_airflow.pools"
                for pool in sorted(used - {p.name for p in declared_pools()})]
    creators = [name for name, service in services.items() if _runs_ensure_pools(service)]
    if not creators:
        return [*problems, "no service runs apisync_airflow.pools.ensure_pools"]
    for creator in creators:
        if services[creator]["depends_on"].get("airflow-apiserver") != {"condition": "service_healthy"}:
            problems.append(f"{creator} starts before the api-server answers")
    if services["airflow-worker"]["depends_on"].get(creators[0]) != {"condition": "service_completed_successfully"}:
        problems.append("the workers start before the pools exist")
    return problems


def _runs_ensure_pools(service: dict) -> bool:
    image = service_image(service)
    argv = [*_as_list(service.get("entrypoint")), *_as_list(service.get("command"))]
    if image is None or not argv or argv[0] != "python" or not argv[1].endswith(".py"):
        return False
    files, _ = entry_points(service, image)
    tree = ast.parse(files[0][0].read_text())
    return any(isinstance(node, ast.Call) and ast.unparse(node.func) == "ensure_pools" for node in ast.walk(tree))


# ---- the simulator and the dev stack stay out of the Airflow image's services ------------------------------------

DEV = ROOT / "dev"
DEV_PACKAGES = ("api_simulator", "devstack")


def _holds_dev_code(source: Path) -> bool:
    """Whether a repo path is dev/, inside it, holds it, or is a folder with one of its packages."""
    source = source.resolve()
    return (source == DEV or DEV in source.parents or source in DEV.parents
            or any((source / package).is_dir() for package in DEV_PACKAGES))


def dev_code_exposed(services: dict[str, dict]) -> list[str]:
    """`service: container path` for each mount, COPY or PYTHONPATH entry of an Airflow-image service (the
    production image: Airflow components, normalizers) through which the simulator or the dev stack is reachable."""
    problems = []
    for name, service in services.items():
        image = service_image(service)
        if image is None or image.base != "apache/airflow":
            continue
        mounts = _mounts(service, image)
        problems += [f"{name}: {target}" for target, source in sorted(mounts.items()) if _holds_dev_code(source)]
        pythonpath = environment(service).get("PYTHONPATH") or image.env.get("PYTHONPATH", "")
        problems += [f"{name}: PYTHONPATH {entry}" for entry in pythonpath.split(":")
                     if entry and (path := _on_disk(entry, mounts)) and _holds_dev_code(path)]
    return problems


# ---- Kafka: the image's documented variables --------------------------------------------------------------------

# The apache/kafka image (apache/kafka docker/README and docker/resources/common-scripts): these are read by
# the image's scripts, not written to server.properties.
KAFKA_IMAGE_VARIABLES = {"CLUSTER_ID", "KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS", "KAFKA_JMX_PORT",
                         "KAFKA_JMX_HOSTNAME", "KAFKA_LOG4J_OPTS", "KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_LOG4J_LOGGERS",
                         "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_TOOLS_LOG4J_LOGLEVEL"}
# Broker and controller properties of Kafka 4.1 (kafka.apache.org/41/configuration/broker-configs) this
# stack may set; a KAFKA_ variable naming anything else is a typo or a variable the image does not know.
KAFKA_BROKER_PROPERTIES = {
    "node.id", "process.roles", "controller.quorum.voters", "controller.quorum.bootstrap.servers",
    "controller.listener.names", "inter.broker.listener.name", "listeners", "advertised.listeners",
    "listener.security.protocol.map", "log.dirs", "log.dir", "metadata.log.dir", "auto.create.topics.enable",
    "default.replication.factor", "min.insync.replicas", "num.partitions", "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr",
    "group.initial.rebalance.delay.ms", "log.retention.hours", "log.retention.ms", "log.cleaner.backoff.ms",
    "unclean.leader.election.enable", "sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol",
    "sasl.mechanism.controller.protocol", "ssl.keystore.filename", "ssl.keystore.credentials",
    "ssl.key.credentials", "ssl.truststore.filename", "ssl.truststore.credentials", "ssl.client.auth",
}
KAFKA_DATA_VOLUME = "/var/lib/kafka/data"  # the image's declared VOLUME, owned by its user


def property_of(variable: str) -> str:
    """The image's mapping: KAFKA_ dropped, ___ → -, __ → _, _ → ., lower case."""
    name = variable.removeprefix("KAFKA_")
    return name.replace("___", "\0").replace("__", "\1").replace("_", ".").replace("\0", "-").replace("\1", "_").lower()


def kafka_services(services: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")}


def kafka_variable_problems(services: dict[str, dict]) -> list[str]:
    """Variables the image would ignore or mistranslate, a missing CLUSTER_ID, data outside the volume."""
    problems = []
    for name, service in kafka_services(services).items():
        env = environment(service)
        for variable in sorted(env):
            if variable in KAFKA_IMAGE_VARIABLES or not variable.startswith("KAFKA_"):
                continue
            if property_of(variable) not in KAFKA_BROKER_PROPERTIES:
                problems.append(f"{name}: {variable} → {property_of(variable)}, not a Kafka broker property")
        cluster_id = env.get("CLUSTER_ID", "")
        if not _is_base64_uuid(cluster_id):
            problems.append(f"{name}: CLUSTER_ID {cluster_id!r} is not a base64 UUID (the image would use its default)")
        targets = {volume.split(":")[1] for volume in service.get("volumes", [])}
        log_dirs = env.get("KAFKA_LOG_DIRS", "")
        if not log_dirs or not all(any(d == t or d.startswith(t + "/") for t in targets) for d in log_dirs.split(",")):
            problems.append(f"{name}: KAFKA_LOG_DIRS {log_dirs!r} is not inside a mounted volume {sorted(targets)}")
        if KAFKA_DATA_VOLUME not in targets:
            problems.append(f"{name}: no volume on {KAFKA_DATA_VOLUME}")
    ids = {environment(s).get("CLUSTER_ID") for s in kafka_services(services).values()}
    if len(ids) > 1:
        problems.append(f"the brokers name different clusters: {sorted(ids)}")
    return problems


def _is_base64_uuid(text: str) -> bool:
    try:
        return len(text) == 22 and len(base64.urlsafe_b64decode(text + "==")) == 16
    except ValueError:
        return False


# ---- Kafka: surviving the loss of one node ---------------------------------------------------------------------------

def quorum_problems(services: dict[str, dict], min_controllers: int, replication: int) -> list[str]:
    """Controllers, voters, replication and client bootstrap, for a cluster that loses one node."""
    nodes = kafka_services(services)
    envs = {name: environment(s) for name, s in nodes.items()}
    problems = []
    controllers = {name for name, env in envs.items() if "controller" in env.get("KAFKA_PROCESS_ROLES", "")}
    if len(controllers) < min_controllers:
        problems.append(f"{len(controllers)} controller(s) ({sorted(controllers)}); need {min_controllers}")
    voters = {env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") for env in envs.values()}
    if len(voters) != 1:
        problems.append(f"the nodes disagree on the quorum: {sorted(map(str, voters))}")
    expected = {f"{envs[n]['KAFKA_NODE_ID']}@{n}:9093" for n in controllers}
    if voters and set(str(next(iter(voters))).split(",")) != expected:
        problems.append(f"voters {sorted(voters)} are not the controllers {sorted(expected)}")
    for name, service in nodes.items():
        waits = set(service.get("depends_on") or {}) & set(nodes)
        if waits:
            problems.append(f"{name} waits for {sorted(waits)}: a quorum of several never forms that way")
    problems += _replication_problems(envs, replication)
    problems += _bootstrap_problems(services, set(nodes), replication)
    return problems


def _replication_problems(envs: dict[str, dict[str, str]], replication: int) -> list[str]:
    min_isr = max(1, replication - 1)
    wanted = {"KAFKA_DEFAULT_REPLICATION_FACTOR": replication, "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": replication,
              "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": replication,
              "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": replication,
              "KAFKA_MIN_INSYNC_REPLICAS": min_isr, "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": min_isr,
              "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": min_isr}
    return [f"{name}: {variable}={env.get(variable)!r}, want {value}"
            for name, env in envs.items() for variable, value in wanted.items() if env.get(variable) != str(value)]


def _bootstrap_problems(services: dict[str, dict], nodes: set[str], replication: int) -> list[str]:
    """Every client lists every broker, and creates apisync's topics with the cluster's replication."""
    problems = []
    for name, service in services.items():
        env = environment(service)
        if name in nodes:
            continue
        if "APISYNC_REPLICATION_FACTOR" in env and env["APISYNC_REPLICATION_FACTOR"] != str(replication):
            problems.append(f"{name}: APISYNC_REPLICATION_FACTOR={env['APISYNC_REPLICATION_FACTOR']}")
        for variable, value in env.items():
            for servers in re.findall(r'"bootstrap\.servers": "([^"]+)"', value) + (
                    [value] if variable in ("APISYNC_KAFKA_BOOTSTRAP", "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS") else []):
                listed = {entry.split(":")[0] for entry in servers.split(",")}
                if listed != nodes:
                    problems.append(f"{name}: {variable} lists {sorted(listed)}, the brokers are {sorted(nodes)}")
    return problems


# ---- the stack as shipped -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_stack() -> dict[str, dict]:
    return active_services(load_compose(), {})


@pytest.fixture(scope="module")
def replicated_stack() -> dict[str, dict]:
    return active_services(load_compose(), read_env_file(REPLICATED_ENV))


def _every_service(compose: dict, env: dict[str, str]) -> dict[str, dict]:
    profiles = {p for s in compose["services"].values() for p in s.get("profiles", [])}
    return active_services(compose, {**env, "COMPOSE_PROFILES": ",".join(profiles)})


def test_every_image_installs_what_its_entry_points_import():
    assert missing_modules(_every_service(load_compose(), {})) == []


def test_every_connection_the_dags_use_is_set_on_the_airflow_services(default_stack):
    connections, _ = dag_needs()
    assert {"kafka_default", "kafka_watch", "redis_default", "hubspot_default"} <= connections
    assert missing_connections(default_stack) == []


def test_every_pool_the_dags_use_is_created_before_the_workers_start(default_stack):
    assert dag_needs()[1]  # the DAGs do use pools
    assert pools_problems(default_stack) == []


def test_no_airflow_service_reaches_the_simulator_or_the_dev_stack():
    assert dev_code_exposed(_every_service(load_compose(), {})) == []


def test_kafka_variables_are_the_images_documented_ones(default_stack, replicated_stack):
    assert kafka_variable_problems(default_stack) == []
    assert kafka_variable_problems(replicated_stack) == []


def test_the_default_stack_is_one_consistent_node(default_stack):
    assert set(kafka_services(default_stack)) == {"kafka-1"}
    assert quorum_problems(default_stack, min_controllers=1, replication=1) == []


def test_the_replicated_stack_survives_the_loss_of_one_node(replicated_stack):
    assert set(kafka_services(replicated_stack)) == {"kafka-1", "kafka-2", "kafka-3"}
    assert quorum_problems(replicated_stack, min_controllers=3, replication=3) == []


# ---- each known defect, reintroduced, is caught ---------------------------------------------------------------------

def test_an_image_missing_a_module_is_caught(monkeypatch):
    def without_pyjwt(service: dict) -> Image | None:
        image = parse_dockerfile(ROOT / service["build"]["context"] / service["build"]["dockerfile"]) \
            if service.get("build") else None
        if image is not None:
            image.requirements = [r for r in image.requirements if not r.startswith("PyJWT")]
        return image

    monkeypatch.setattr(sys.modules[__name__], "service_image", without_pyjwt)
    problems = missing_modules(_every_service(load_compose(), {}))
    assert "api-simulator: jwt (imported by dev/api_simulator/salesforce_oauth.py)" in problems


def test_a_missing_connection_is_caught():
    compose = load_compose()
    for service in compose["services"].values():
        (service.get("environment") or {}).pop("AIRFLOW_CONN_HUBSPOT_DEFAULT", None)
    assert "airflow-worker: hubspot_default" in missing_connections(active_services(compose, {}))


def test_no_pool_service_is_caught():
    compose = load_compose()
    del compose["services"]["airflow-pools"]
    del compose["services"]["airflow-worker"]["depends_on"]["airflow-pools"]
    assert pools_problems(active_services(compose, {})) == ["no service runs apisync_airflow.pools.ensure_pools"]


@pytest.mark.parametrize("volume", ["./dev:/opt/airflow/dev", "./dev/api_simulator:/opt/airflow/include/api_simulator",
                                    ".:/opt/airflow/repo"])
def test_dev_code_mounted_into_an_airflow_service_is_caught(volume):
    compose = load_compose()
    worker = compose["services"]["airflow-worker"]
    worker["volumes"] = [*worker["volumes"], volume]
    worker["environment"]["PYTHONPATH"] += ":/opt/airflow/dev"
    target = volume.split(":")[1]
    assert f"airflow-worker: {target}" in dev_code_exposed(active_services(compose, {}))


@pytest.mark.parametrize("defect, expected", [
    (lambda env: env.update(KAFKA_CLUSTER_ID=env.pop("CLUSTER_ID")), "KAFKA_CLUSTER_ID → cluster.id, not a Kafka"),
    (lambda env: env.pop("CLUSTER_ID"), "CLUSTER_ID '' is not a base64 UUID"),
    (lambda env: env.pop("KAFKA_LOG_DIRS"), "KAFKA_LOG_DIRS '' is not inside a mounted volume"),
    (lambda env: env.update(KAFKA_LOG_DIRS="/tmp/kraft-combined-logs"), "is not inside a mounted volume"),
    (lambda env: env.update(KAFKA_LOGS_DIR=env.pop("KAFKA_LOG_DIRS")), "KAFKA_LOGS_DIR → logs.dir, not a Kafka"),
])
def test_a_kafka_variable_the_image_does_not_document_is_caught(defect, expected):
    compose = load_compose()
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        defect(compose["services"][name]["environment"])
    problems = kafka_variable_problems(_every_service(compose, {}))
    assert any(expected in problem for problem in problems), problems


def test_a_replicated_profile_with_one_controller_is_caught():
    compose = load_compose()
    for name in ("kafka-2", "kafka-3"):
        compose["services"][name]["environment"]["KAFKA_PROCESS_ROLES"] = "broker"
        compose["services"][name]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] = "1@kafka-1:9093"
        compose["services"][name]["depends_on"] = {"kafka-1": {"condition": "service_healthy"}}
    stack = active_services(compose, read_env_file(REPLICATED_ENV))
    problems = quorum_problems(stack, min_controllers=3, replication=3)
    assert any("1 controller(s)" in p for p in problems), problems
    assert any("disagree on the quorum" in p for p in problems)
    assert any("waits for ['kafka-1']" in p for p in problems)


def test_a_replicated_profile_without_replication_is_caught():
    env = {**read_env_file(REPLICATED_ENV), "APISYNC_REPLICATION_FACTOR": "1"}
    problems = quorum_problems(active_services(load_compose(), env), min_controllers=3, replication=3)
    assert any("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR='1'" in p for p in problems), problems


def test_interpolation_follows_compose():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET} $$HOST", env) == "x d  d  $HOST"
    assert copy.deepcopy(load_compose()) == load_compose()  # interpolation never edits the parsed file
