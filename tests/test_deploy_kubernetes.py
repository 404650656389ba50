"""The Kubernetes manifests (deploy/kubernetes): they render, validate, and agree with the code.

Each `*_problems` function checks one property of a rendered overlay and says what is wrong. The
tests assert that it finds nothing in the real manifests and something in a broken copy.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
import tomllib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment

import jsonschema
import kubernetes_validate
import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError

from connector import cli
from connector.config import TopicSettings, load
from connector.health import health_app
from connector.receiver import ROUTES, WEBHOOK_PATH
from connector.topics import TopicSpec, plan
from outgrow_braze_dev import commands as dev_commands
from outgrow_braze_dev.sandbox import admin
from tests.deploy_support import (
    CUSTOM_RESOURCE_SCHEMAS,
    DEPLOY,
    KUBERNETES,
    ROOT,
    FromSecret,
    Manifest,
    container_env,
    containers,
    effective,
    find,
    known_setting_names,
    mounted_key,
    one,
    pod_templates,
    provided_secrets,
    render,
    secret_value,
    selects,
    settings,
)
from tests.dev_support import production_install

# `egress-proxy` is production with components/egress-proxy, as deploy/README.md combines them.
OVERLAYS = ("dev", "production", "egress-proxy")
STRIMZI = "strimzi"
DIRECTORIES = {
    "base": KUBERNETES / "base",
    "dev": KUBERNETES / "overlays" / "dev",
    "production": KUBERNETES / "overlays" / "production",
    "egress-proxy": ROOT / "tests" / "data" / "kubernetes" / "egress-proxy",
    STRIMZI: KUBERNETES / "strimzi",
}
# Built-in kinds are validated against this release's schemas, the oldest supported: the
# receiver's preStop `sleep` action is on by default from Kubernetes 1.30.
KUBERNETES_VERSION = "1.31"
IMAGE = "ghcr.io/outgrow-braze/outgrow-braze"
# The development image (deploy/Dockerfile's `sandbox` target): the connector and its dev tools.
SANDBOX_IMAGE = "ghcr.io/outgrow-braze/outgrow-braze-sandbox"
SHIPPED_MAPPING = ROOT / "connector" / "default_mapping.yaml"
# After the drain a service still flushes its producer, or commits and leaves the group.
CLOSE_MARGIN_S = 5.0
MIN_SCALE_DOWN_WINDOW_S = 600

Rendered = dict[str, list[Manifest]]


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    """Render every kustomization once for the module."""
    return {name: render(path) for name, path in DIRECTORIES.items()}


# --------------------------------------------------------------------------- reading an overlay


def role_of(container: Manifest) -> str:
    """Return the subcommand a container runs (receiver, worker, sandbox...)."""
    return str(container.get("args", ["?"])[0])


def the_role(objects: list[Manifest], role: str) -> tuple[Manifest, Manifest, dict[str, Any]]:
    """Return the pod spec, container and variables of the one container running a role."""
    found = [(pod, c) for _, pod, c in containers(objects) if role_of(c) == role]
    assert len(found) == 1, f"expected one {role} container, found {len(found)}"
    pod, container = found[0]
    return pod, container, container_env(container, objects)


def kafka_topics(rendered: Rendered) -> dict[str, Manifest]:
    """Return the Strimzi KafkaTopics by Kafka topic name."""
    return {
        topic["spec"].get("topicName", topic["metadata"]["name"]): topic
        for topic in find(rendered[STRIMZI], "KafkaTopic")
    }


def uses_strimzi(rendered: Rendered, overlay: str) -> bool:
    """Say whether an overlay takes its topics from deploy/kubernetes/strimzi."""
    _, _, receiver = the_role(rendered[overlay], "receiver")
    return not effective(receiver, "RECEIVER_ENSURE_TOPICS")


def raw_topic_shape(rendered: Rendered, overlay: str) -> tuple[int, int]:
    """Return the raw topic's partitions and max.message.bytes: its KafkaTopic's, or ensure's."""
    _, _, receiver = the_role(rendered[overlay], "receiver")
    if not uses_strimzi(rendered, overlay):
        return effective(receiver, "TOPIC_PARTITIONS"), effective(
            receiver, "TOPIC_MAX_MESSAGE_BYTES"
        )
    topic = kafka_topics(rendered).get(effective(receiver, "RAW_TOPIC"))
    assert topic is not None, f"{overlay}: RECEIVER_ENSURE_TOPICS is off and no KafkaTopic is made"
    return int(topic["spec"]["partitions"]), int(topic["spec"]["config"]["max.message.bytes"])


def strimzi_cluster(rendered: Rendered) -> tuple[str, str]:
    """Return the name and namespace of the Kafka cluster the Strimzi resources belong to."""
    owners = {
        (obj["metadata"]["labels"]["strimzi.io/cluster"], obj["metadata"]["namespace"])
        for kind in ("KafkaTopic", "KafkaUser")
        for obj in find(rendered[STRIMZI], kind)
    }
    assert len(owners) == 1, f"Strimzi resources of several clusters: {owners}"
    return owners.pop()


def documented_external_secrets() -> set[str]:
    """Return the Secrets deploy/README.md lists as made outside these manifests."""
    text = (DEPLOY / "README.md").read_text()
    section = text.split("### Secrets made elsewhere", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9.-]+)` \|", section, flags=re.MULTILINE))


def secret_references(objects: list[Manifest]) -> Iterator[tuple[str, str | None, str]]:
    """Yield (Secret, key or None, referrer) for every required reference to a Secret."""
    for workload, pod, container in containers(objects):
        yield from _pod_secret_references(workload["metadata"]["name"], pod, container)
    for auth in find(objects, "TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef", []):
            yield ref["name"], ref["key"], f"TriggerAuthentication {auth['metadata']['name']}"
    for ingress in find(objects, "Ingress"):
        for tls in ingress["spec"].get("tls", []):
            yield tls["secretName"], None, f"Ingress {ingress['metadata']['name']}"


def _pod_secret_references(
    workload: str, pod: Manifest, container: Manifest
) -> Iterator[tuple[str, str | None, str]]:
    where = f"{workload}/{container['name']}"
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref and not ref.get("optional", False):
            yield ref["name"], ref["key"], where
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            items = volume["secret"].get("items", [])
            for key in [item["key"] for item in items] or [None]:
                yield volume["secret"]["secretName"], key, f"{workload} volume {volume['name']}"


def served_paths(role: str) -> set[str]:
    """Return the paths a role's HTTP server routes, read from its real application."""
    if role == "receiver":
        return set(ROUTES)
    if role == "worker":
        app = health_app(lambda: None, lambda: b"")
    else:
        app = web.Application()
        admin.add_routes(app)  # the sandbox's own pages; its catch-all would match anything
    return {resource.canonical for resource in app.router.resources()}


def image_parts(image: str) -> tuple[str, str, str]:
    """Split `repository[:tag][@digest]`."""
    name, _, digest = image.partition("@")
    repository, colon, tag = name.rpartition(":")
    return (repository, tag, digest) if colon and "/" not in tag else (name, "", digest)


def dockerfile_uid() -> int:
    """Return the numeric user deploy/Dockerfile runs as."""
    found = re.findall(r"^USER (\d+)", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert found, "deploy/Dockerfile sets no numeric USER"
    return int(found[-1])


# --------------------------------------------------------------------------- checks of one overlay


def schema_problems(objects: list[Manifest]) -> list[str]:
    """Built-in objects failing Kubernetes' schemas (strict), custom resources failing ours."""
    problems = []
    for obj in objects:
        name = f"{obj['kind']} {obj['metadata']['name']}"
        schema = CUSTOM_RESOURCE_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        try:
            if schema is None:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            else:
                jsonschema.validate(obj, schema)
        except jsonschema.ValidationError as exc:
            path = ".".join(str(part) for part in exc.absolute_path)
            problems.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: {obj['apiVersion']} is neither built in nor known here")
    return problems


def unknown_env_problems(objects: list[Manifest]) -> list[str]:
    """Variables the code does not read: a misspelt setting is ignored without a word."""
    known = known_setting_names()
    return [
        f"{workload['metadata']['name']}/{container['name']}: {name} is not a setting"
        for workload, _, container in containers(objects)
        for name in container_env(container, objects)
        if name not in known
    ]


def value_problems(objects: list[Manifest]) -> list[str]:
    """Values the code would refuse at start-up."""
    known = settings()
    problems = []
    for _, _, container in containers(objects):
        for name, value in container_env(container, objects).items():
            if name in known and isinstance(value, str):
                try:
                    known[name].parse(value)
                except ValidationError as exc:
                    problems.append(f"{container['name']}: {name}={value!r}: {exc}")
    return problems


REQUIRED = {
    "worker": [("BRAZE_REST_ENDPOINT",), ("BRAZE_API_KEY",)],
    "receiver": [("WEBHOOK_BASIC_AUTH", "WEBHOOK_TOKENS")],
}
SASL = ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")


def required_problems(objects: list[Manifest]) -> list[str]:
    """A role without one of each of its required settings, or SASL without its three."""
    problems = []
    for role, needs in REQUIRED.items():
        _, _, env = the_role(objects, role)
        for names in needs:
            if not any(_given(env.get(name)) for name in names):
                problems.append(f"{role} sets none of {', '.join(names)}")
        if str(effective(env, "KAFKA_SECURITY_PROTOCOL")).startswith("SASL_"):
            problems += [f"{role}: SASL without {name}" for name in SASL if name not in env]
    return problems


def _given(value: Any) -> bool:
    return (
        bool(value)
        if isinstance(value, str)
        else isinstance(value, FromSecret) and not value.optional
    )


ROLE_COMMANDS = {
    "receiver": cli.cmd_receiver,
    "worker": cli.cmd_worker,
    "sandbox": dev_commands.cmd_sandbox,
}
ROLE_IMAGES = {"receiver": IMAGE, "worker": IMAGE, "sandbox": SANDBOX_IMAGE}


def command_problems(objects: list[Manifest]) -> list[str]:
    """Containers not running their own `outgrow-braze` subcommand from their pinned image."""
    problems = []
    for _, _, container in containers(objects):
        name, args, image = container["name"], container.get("args", []), container["image"]
        if "command" in container:
            problems.append(f"{name}: `command` replaces the image's entrypoint")
        repository, tag, digest = image_parts(image)
        expected = ROLE_IMAGES.get(name, IMAGE)
        if repository != expected or (tag in ("", "latest") and not digest):
            problems.append(f"{name}: image {image} is not a pinned {expected}")
        problems += _parse_problems(name, args, development=repository == SANDBOX_IMAGE)
    return problems


def _parse_problems(name: str, args: list[str], *, development: bool) -> list[str]:
    """Parse the arguments as the image's own `outgrow-braze` would: the production image has
    no development tools, hence no `sandbox` command."""
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))  # argparse's usage
            if not development:
                stack.enter_context(production_install())
            parsed = cli.build_parser().parse_args(args)
    except SystemExit:
        return [f"{name}: `outgrow-braze {' '.join(args)}` is refused"]
    if parsed.func is not ROLE_COMMANDS.get(name):
        return [f"{name}: runs `outgrow-braze {' '.join(args)}`"]
    return []


def drain_problems(objects: list[Manifest]) -> list[str]:
    """Grace periods shorter than the preStop wait, the drain and the close together."""
    problems = []
    pod, container, env = the_role(objects, "receiver")
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if not pre_stop:
        problems.append("receiver: no preStop sleep for the load balancers to notice")
    delay = effective(env, "RECEIVER_SHUTDOWN_DELAY_S") + effective(env, "RECEIVER_DRAIN_TIMEOUT_S")
    problems += _grace_problems("receiver", pod, pre_stop + delay + CLOSE_MARGIN_S)
    pod, _, env = the_role(objects, "worker")
    problems += _grace_problems(
        "worker", pod, effective(env, "WORKER_DRAIN_TIMEOUT_S") + CLOSE_MARGIN_S
    )
    return problems


def _grace_problems(role: str, pod: Manifest, needed: float) -> list[str]:
    grace = pod.get("terminationGracePeriodSeconds", 30)
    return [] if grace > needed else [f"{role}: {grace} s of grace, {needed:g} s of shutdown"]


PORT_SETTINGS = {"receiver": "RECEIVER_PORT", "worker": "WORKER_PORT", "sandbox": "SANDBOX_PORT"}
PROBE_PATHS = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}


def probe_problems(objects: list[Manifest]) -> list[str]:
    """Probes on paths the service does not route, or on ports it does not listen on."""
    problems = []
    for _, _, container in containers(objects):
        role = role_of(container)
        port = int(effective(container_env(container, objects), PORT_SETTINGS[role]))
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if port not in ports.values():
            problems.append(f"{role}: listens on {port}, declares {sorted(ports.values())}")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in container:
                get = container[kind]["httpGet"]
                problems += _probe_problems(
                    role, kind, get, ports.get(get["port"], get["port"]), port
                )
            elif kind != "startupProbe":
                problems.append(f"{role}: no {kind}")
    return problems


def _probe_problems(role: str, kind: str, get: Manifest, target: Any, port: int) -> list[str]:
    problems = [] if target == port else [f"{role} {kind}: port {get['port']} is not {port}"]
    if get["path"] not in served_paths(role):
        problems.append(f"{role} {kind}: {get['path']} is not served")
    if role != "sandbox" and get["path"] != PROBE_PATHS.get(kind, get["path"]):
        problems.append(f"{role} {kind}: {get['path']} instead of {PROBE_PATHS[kind]}")
    return problems


def security_problems(objects: list[Manifest]) -> list[str]:
    """Containers that could run as root, write their image, escalate or keep capabilities."""
    per_pod = {
        "runAsNonRoot": True,
        "runAsUser": dockerfile_uid(),
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    per_container = {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    problems = []
    for workload, pod, container in containers(objects):
        where = f"{workload['metadata']['name']}/{container['name']}"
        own = container.get("securityContext", {})
        merged = {**pod.get("securityContext", {}), **own}  # the container's settings win
        for key, value in per_pod.items():
            if merged.get(key) != value:
                problems.append(f"{where}: securityContext.{key} is {merged.get(key)!r}")
        for key, value in per_container.items():
            if own.get(key) != value:
                problems.append(f"{where}: securityContext.{key} is {own.get(key)!r}")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token it never uses")
        tmp = mounted_key(pod, container, "/tmp/file")  # noqa: S108
        if tmp is None or "emptyDir" not in tmp[0]:
            problems.append(f"{where}: no emptyDir at /tmp, and the root filesystem is read-only")
    return problems


def resource_problems(objects: list[Manifest]) -> list[str]:
    """Containers without requests and limits (the HPA's CPU target needs the request)."""
    return [
        f"{container['name']}: no {kind}.{resource}"
        for _, _, container in containers(objects)
        for kind in ("requests", "limits")
        for resource in ("cpu", "memory")
        if resource not in container.get("resources", {}).get(kind, {})
    ]


def secret_problems(objects: list[Manifest]) -> list[str]:
    """Secrets or keys nothing makes: not here, not an ExternalSecret, not in deploy/README.md."""
    provided = provided_secrets(objects)
    documented = documented_external_secrets()
    problems = []
    for name, key, where in secret_references(objects):
        if name in provided and key is not None and key not in provided[name]:
            problems.append(f"{where}: Secret {name} has no key {key}")
        elif name not in provided and name not in documented:
            problems.append(f"{where}: Secret {name} is neither made here nor documented")
    return problems


def file_problems(objects: list[Manifest]) -> list[str]:
    """*_FILE settings naming a file that no ConfigMap or Secret volume puts there."""
    configmaps = {
        cm["metadata"]["name"]: set(cm.get("data", {})) for cm in find(objects, "ConfigMap")
    }
    secrets = provided_secrets(objects)
    problems = []
    for _, pod, container in containers(objects):
        for name, path in container_env(container, objects).items():
            if not name.endswith("_FILE") or not isinstance(path, str):
                continue
            volume, key = mounted_key(pod, container, path) or ({}, "")
            if "configMap" in volume:
                keys = configmaps.get(volume["configMap"]["name"], set())
            else:
                keys = secrets.get(volume.get("secret", {}).get("secretName"), set())
            if key not in keys:
                problems.append(f"{container['name']}: {name}={path} is not in a mounted volume")
    return problems


def proxy_problems(objects: list[Manifest]) -> list[str]:
    """A container sent through a proxy that NO_PROXY does not keep Kafka and the cluster's
    Services away from, or that its network policies do not let reach the proxy."""
    services = [
        f"{s['metadata']['name']}.{s['metadata']['namespace']}.svc"
        for s in find(objects, "Service")
    ]
    problems = []
    for _, template in pod_templates(objects):
        for container in template["spec"]["containers"]:
            env = container_env(container, objects)
            proxy = env.get("HTTPS_PROXY") or env.get("HTTP_PROXY")
            if not isinstance(proxy, str):
                continue
            kafka = [
                h.rsplit(":", 1)[0] for h in effective(env, "KAFKA_BOOTSTRAP_SERVERS").split(",")
            ]
            exempt = {"no": env.get("NO_PROXY", "")}
            problems += [
                f"{container['name']}: NO_PROXY leaves {host} to the proxy"
                for host in kafka + services
                if not proxy_bypass_environment(host, exempt)
            ]
            if not _egress_allows(objects, template["metadata"]["labels"], urlsplit(proxy).port):
                problems.append(f"{container['name']}: no network policy lets it reach {proxy}")
    return problems


def _egress_allows(objects: list[Manifest], labels: dict[str, str], port: int | None) -> bool:
    return any(
        any(p.get("port") == port for p in rule.get("ports", []))
        for policy in find(objects, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels)
        for rule in policy["spec"].get("egress", [])
    )


def selector_problems(objects: list[Manifest]) -> list[str]:
    """Services, budgets and policies selecting no pod, or naming a port no selected pod has."""
    pods = [
        (template["metadata"]["labels"], template["spec"]) for _, template in pod_templates(objects)
    ]
    problems = []
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        for obj in find(objects, kind):
            where = f"{kind} {obj['metadata']['name']}"
            selector = obj["spec"].get("podSelector", obj["spec"].get("selector", {}))
            selector = selector.get("matchLabels", selector)
            matched = [pod for labels, pod in pods if selects(selector, labels)]
            if not matched:
                problems.append(f"{where} selects no pod")
            for port in _named_ports(obj):
                if not any(_declares(pod, port) for pod in matched):
                    problems.append(f"{where}: no selected pod has a port {port}")
    return problems


def _named_ports(obj: Manifest) -> Iterator[str]:
    ports = [p["targetPort"] for p in obj["spec"].get("ports", [])]
    ports += [
        p.get("port") for rule in obj["spec"].get("ingress", []) for p in rule.get("ports", [])
    ]
    return (port for port in ports if isinstance(port, str))


def _declares(pod: Manifest, port: str) -> bool:
    return any(p.get("name") == port for c in pod["containers"] for p in c.get("ports", []))


def scaling_problems(objects: list[Manifest]) -> list[str]:
    """Autoscaled Deployments that pin `replicas`; HPAs not on autoscaling/v2 CPU."""
    autoscalers = find(objects, "HorizontalPodAutoscaler") + find(objects, "ScaledObject")
    problems = [
        f"{scaler['spec']['scaleTargetRef']['name']}: sets replicas, which its autoscaler owns"
        for scaler in autoscalers
        if "replicas"
        in one(objects, "Deployment", scaler["spec"]["scaleTargetRef"]["name"])["spec"]
    ]
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        metrics = [m.get("resource", {}).get("name") for m in hpa["spec"]["metrics"]]
        if hpa["apiVersion"] != "autoscaling/v2" or "cpu" not in metrics:
            problems.append(f"{hpa['metadata']['name']}: not an autoscaling/v2 CPU autoscaler")
    return problems


# --------------------------------------------------------------------------- checks across files


KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def keda_problems(rendered: Rendered, overlay: str) -> list[str]:
    """A lag trigger on another cluster, group or topic than the worker's; too many replicas."""
    objects = rendered[overlay]
    _, _, env = the_role(objects, "worker")
    spec = one(objects, "ScaledObject", "outgrow-braze-worker")["spec"]
    problems = []
    if (
        spec["scaleTargetRef"]["name"]
        != one(objects, "Deployment", "outgrow-braze-worker")["metadata"]["name"]
    ):
        problems.append(f"scales {spec['scaleTargetRef']['name']}, not the worker")
    (trigger,) = [t for t in spec["triggers"] if t["type"] == "kafka"]
    meta = trigger["metadata"]
    for key, name in (
        ("bootstrapServers", "KAFKA_BOOTSTRAP_SERVERS"),
        ("consumerGroup", "CONSUMER_GROUP"),
        ("topic", "RAW_TOPIC"),
    ):
        if meta.get(key) != effective(env, name):
            problems.append(
                f"trigger {key} {meta.get(key)!r}, the worker's {name} {effective(env, name)!r}"
            )
    if int(meta.get("lagThreshold", "0")) <= 0:
        problems.append("trigger without a lagThreshold")
    partitions, _ = raw_topic_shape(rendered, overlay)
    if not 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions:
        problems.append(
            f"{spec['minReplicaCount']}..{spec['maxReplicaCount']} workers, {partitions} partitions"
        )
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    if behavior["scaleDown"]["stabilizationWindowSeconds"] < MIN_SCALE_DOWN_WINDOW_S:
        problems.append("scale-down stabilisation shorter than 10 minutes")
    return problems + _keda_auth_problems(objects, trigger, env)


def _keda_auth_problems(
    objects: list[Manifest], trigger: Manifest, env: dict[str, Any]
) -> list[str]:
    protocol = effective(env, "KAFKA_SECURITY_PROTOCOL")
    tls = "enable" if protocol in ("SSL", "SASL_SSL") else None
    sasl = (
        KEDA_SASL[effective(env, "KAFKA_SASL_MECHANISM")] if protocol.startswith("SASL_") else None
    )
    meta = trigger["metadata"]
    problems = []
    if (meta.get("tls"), meta.get("sasl")) != (tls, sasl):
        problems.append(
            f"trigger tls/sasl {meta.get('tls')}/{meta.get('sasl')}, the worker's {protocol}"
        )
    needed = ({"username", "password"} if sasl else set()) | (
        {"ca"} if "KAFKA_SSL_CA_FILE" in env else set()
    )
    given: set[str] = set()
    if "authenticationRef" in trigger:
        auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        given = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    problems += [f"KEDA is not given the worker's {p}" for p in sorted(needed - given)]
    return problems


TOPIC_SETTINGS = ("RAW_TOPIC", "DLQ_TOPIC", "STATE_TOPIC")


def topic_problems(rendered: Rendered, overlay: str) -> list[str]:
    """KafkaTopics missing for the overlay's topics, or unlike what `topics ensure` makes."""
    if not uses_strimzi(rendered, overlay):
        return []
    _, _, env = the_role(rendered[overlay], "worker")
    topics = kafka_topics(rendered)
    found = {setting: topics.get(effective(env, setting)) for setting in TOPIC_SETTINGS}
    problems = [
        f"no KafkaTopic for {setting} {effective(env, setting)}"
        for setting, topic in found.items()
        if topic is None
    ]
    if problems:
        return problems
    raw = found["RAW_TOPIC"]["spec"]
    wanted = plan(ensure_settings(env), raw["replicas"], raw_partitions=raw["partitions"])
    for setting, spec in zip(TOPIC_SETTINGS, wanted, strict=True):
        problems += _topic_shape_problems(setting, found[setting]["spec"], spec)
    return problems


def ensure_settings(env: dict[str, Any]) -> TopicSettings:
    """The topic settings as `topics ensure` would read them: the overlay's, else defaults."""
    given = {name.lower(): effective(env, name) for name in TOPIC_SETTINGS}
    return load(TopicSettings, given)


def _topic_shape_problems(setting: str, actual: Manifest, wanted: TopicSpec) -> list[str]:
    problems = []
    if actual["partitions"] != wanted.partitions:
        problems.append(f"{setting}: {actual['partitions']} partitions, {wanted.partitions} wanted")
    config = {key: str(value) for key, value in actual["config"].items()}
    for key, value in wanted.configs.items():
        if key != "min.insync.replicas" and config.get(key) != value:
            problems.append(f"{setting}: {key} {config.get(key)}, `topics ensure` makes {value}")
    min_isr = int(config.get("min.insync.replicas", 1))
    if not 2 <= min_isr < actual["replicas"]:
        problems.append(f"{setting}: min.insync.replicas {min_isr} of {actual['replicas']}")
    return problems


ROLE_ACLS = {
    "receiver": [("topic", "RAW_TOPIC", "Write"), ("cluster", None, "IdempotentWrite")],
    "worker": [
        ("topic", "RAW_TOPIC", "Read"),
        ("group", "CONSUMER_GROUP", "Read"),
        ("topic", "DLQ_TOPIC", "Write"),
        ("topic", "STATE_TOPIC", "Read"),
        ("topic", "STATE_TOPIC", "Write"),
        ("cluster", None, "IdempotentWrite"),
    ],
}


def acl_problems(rendered: Rendered, overlay: str) -> list[str]:
    """SASL users that Strimzi does not make, or that may not do what their role does."""
    users = {user["metadata"]["name"]: user for user in find(rendered[STRIMZI], "KafkaUser")}
    problems = []
    for role, needs in ROLE_ACLS.items():
        _, _, env = the_role(rendered[overlay], role)
        if not str(effective(env, "KAFKA_SECURITY_PROTOCOL")).startswith("SASL_"):
            continue
        username = env.get("KAFKA_SASL_USERNAME")
        if isinstance(username, FromSecret):
            username = secret_value(rendered[overlay], username)
        user = users.get(str(username))
        if user is None:
            problems.append(f"{role}: no KafkaUser {username}")
            continue
        if user["spec"]["authentication"]["type"].upper() != effective(env, "KAFKA_SASL_MECHANISM"):
            problems.append(
                f"{role}: {username} does not use {effective(env, 'KAFKA_SASL_MECHANISM')}"
            )
        allowed = _allowed(user)
        for kind, name, operation in needs:
            resource = effective(env, name) if name else None
            if not {(kind, resource, operation), (kind, resource, "All")} & allowed:
                problems.append(f"{role}: {username} may not {operation} {kind} {resource}")
    return problems


def _allowed(user: Manifest) -> set[tuple[str, str | None, str]]:
    return {
        (acl["resource"]["type"], acl["resource"].get("name"), operation)
        for acl in user["spec"]["authorization"]["acls"]
        if acl.get("type", "allow") == "allow"
        and acl["resource"].get("patternType", "literal") == "literal"
        for operation in acl["operations"]
    }


def credentials_problems(rendered: Rendered, overlay: str) -> list[str]:
    """Kafka Secrets copied from the Strimzi namespace that are not there or may not be read."""
    objects, strimzi = rendered[overlay], rendered[STRIMZI]
    cluster, kafka_namespace = strimzi_cluster(rendered)
    made = {user["metadata"]["name"] for user in find(strimzi, "KafkaUser")}
    made.add(f"{cluster}-cluster-ca-cert")
    problems = []
    for store in find(objects, "SecretStore"):
        kube = store["spec"]["provider"].get("kubernetes")
        if kube is None:
            continue
        if kube.get("remoteNamespace") != kafka_namespace:
            problems.append(
                f"SecretStore {store['metadata']['name']} reads {kube.get('remoteNamespace')}"
            )
        account = kube["auth"]["serviceAccount"]["name"]
        if not find(objects, "ServiceAccount", account):
            problems.append(f"no ServiceAccount {account}")
        readable = _readable(strimzi, account, store["metadata"]["namespace"])
        for external in find(objects, "ExternalSecret"):
            if external["spec"]["secretStoreRef"]["name"] == store["metadata"]["name"]:
                for key in {item["remoteRef"]["key"] for item in external["spec"]["data"]}:
                    if key not in made or key not in readable:
                        problems.append(f"{external['metadata']['name']}: cannot read {key}")
    return problems


def _readable(strimzi: list[Manifest], account: str, namespace: str) -> set[str]:
    subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    return {
        name
        for binding in find(strimzi, "RoleBinding")
        if subject in binding["subjects"]
        for rule in one(strimzi, "Role", binding["roleRef"]["name"])["rules"]
        if "secrets" in rule["resources"] and "get" in rule["verbs"]
        for name in rule.get("resourceNames", [])
    }


BODY_SIZE_UNITS = {"k": 1024, "m": 1024**2}


def ingress_problems(rendered: Rendered, overlay: str) -> list[str]:
    """Ingresses publishing more than the webhook, or refusing bodies the receiver takes."""
    objects = rendered[overlay]
    _, _, receiver = the_role(objects, "receiver")
    problems = []
    for ingress in find(objects, "Ingress"):
        for path in [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]:
            if not path["path"].startswith(WEBHOOK_PATH):
                problems.append(f"publishes {path['path']}, more than {WEBHOOK_PATH}")
            backend = path["backend"]["service"]
            ports = {p["name"] for p in one(objects, "Service", backend["name"])["spec"]["ports"]}
            if backend["port"].get("name") not in ports:
                problems.append(f"{backend['name']} has no port {backend['port']}")
        annotations = ingress["metadata"].get("annotations", {})
        size = annotations.get("nginx.ingress.kubernetes.io/proxy-body-size", "1m")
        if int(size[:-1]) * BODY_SIZE_UNITS[size[-1]] <= effective(
            receiver, "RECEIVER_MAX_BODY_BYTES"
        ):
            problems.append(f"proxy-body-size {size} refuses bodies the receiver accepts")
    return problems


def size_problems(rendered: Rendered, overlay: str) -> list[str]:
    """Bodies the receiver accepts that the raw topic would refuse."""
    _, _, receiver = the_role(rendered[overlay], "receiver")
    _, max_message_bytes = raw_topic_shape(rendered, overlay)
    body = effective(receiver, "RECEIVER_MAX_BODY_BYTES")
    # A record is the body plus its key and headers.
    if body + 64 * 1024 > max_message_bytes:
        return [
            f"RECEIVER_MAX_BODY_BYTES {body} does not fit max.message.bytes {max_message_bytes}"
        ]
    return []


def mapping_problems(rendered: Rendered, overlay: str) -> list[str]:
    """A receiver or worker whose MAPPING_FILE is not the shipped mapping from a read-only
    ConfigMap, or the two reading different ConfigMaps: the receiver keys records by the
    mapping's identity rules, and the worker must agree on each user's partition."""
    objects = rendered[overlay]
    problems, sources = [], {}
    for role in ("receiver", "worker"):
        pod, container, env = the_role(objects, role)
        path = env.get("MAPPING_FILE")
        found = mounted_key(pod, container, path) if isinstance(path, str) else None
        if found is None or "configMap" not in found[0]:
            problems.append(f"{role}: MAPPING_FILE {path} is not a mounted ConfigMap key")
            continue
        volume, key = found
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        if not mount.get("readOnly"):
            problems.append(f"{role}: the mapping is mounted writable")
        sources[role] = (volume["configMap"]["name"], key)
        mapping = one(objects, "ConfigMap", volume["configMap"]["name"])["data"].get(key)
        if mapping != SHIPPED_MAPPING.read_text():
            problems.append(f"{role}: {key} is not {SHIPPED_MAPPING.relative_to(ROOT)}")
    if len(set(sources.values())) > 1:
        problems.append(f"receiver and worker read different mappings: {sources}")
    return problems


def state_problems(rendered: Rendered, overlay: str) -> list[str]:
    """A worker whose STATE_DIR is not a writable emptyDir of its own with a size limit (unset,
    the store would fill the small /tmp)."""
    pod, container, env = the_role(rendered[overlay], "worker")
    path = env.get("STATE_DIR")
    if not isinstance(path, str):
        return ["worker: no STATE_DIR: the delivery state would go to /tmp"]
    found = mounted_key(pod, container, path.rstrip("/") + "/state.db")
    if found is None or "emptyDir" not in found[0]:
        return [f"worker: STATE_DIR {path} is not an emptyDir"]
    volume = found[0]
    problems = []
    if not volume["emptyDir"].get("sizeLimit"):
        problems.append(f"worker: the emptyDir {volume['name']} of STATE_DIR has no sizeLimit")
    if volume["emptyDir"].get("medium") == "Memory":
        problems.append("worker: STATE_DIR in memory defeats the store's spilling to disk")
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    if mount.get("readOnly"):
        problems.append("worker: STATE_DIR is mounted read-only")
    tmp = mounted_key(pod, container, "/tmp/file")  # noqa: S108
    if tmp is not None and tmp[0]["name"] == volume["name"]:
        problems.append("worker: STATE_DIR shares the /tmp volume")
    return problems


def image_problems(rendered: Rendered, overlay: str) -> list[str]:
    """Production images at another version than the package's."""
    if overlay != "production":
        return []
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return [
        f"{container['name']}: {container['image']}, the package is {version}"
        for _, _, container in containers(rendered[overlay])
        if image_parts(container["image"])[1] not in (version, "")  # a digest alone pins too
    ]


Check = Callable[[Rendered, str], list[str]]
CHECKS: dict[str, Check] = {
    "schemas": lambda r, o: schema_problems(r[o]),
    "unknown-env": lambda r, o: unknown_env_problems(r[o]),
    "values": lambda r, o: value_problems(r[o]),
    "required": lambda r, o: required_problems(r[o]),
    "commands": lambda r, o: command_problems(r[o]),
    "drain": lambda r, o: drain_problems(r[o]),
    "probes": lambda r, o: probe_problems(r[o]),
    "security": lambda r, o: security_problems(r[o]),
    "resources": lambda r, o: resource_problems(r[o]),
    "secrets": lambda r, o: secret_problems(r[o]),
    "files": lambda r, o: file_problems(r[o]),
    "selectors": lambda r, o: selector_problems(r[o]),
    "scaling": lambda r, o: scaling_problems(r[o]),
    "proxy": lambda r, o: proxy_problems(r[o]),
    "keda": keda_problems,
    "topics": topic_problems,
    "acls": acl_problems,
    "credentials": credentials_problems,
    "ingress": ingress_problems,
    "sizes": size_problems,
    "mapping": mapping_problems,
    "state": state_problems,
    "images": image_problems,
}


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("directory", list(DIRECTORIES))
def test_every_kustomization_renders(rendered: Rendered, directory: str) -> None:
    objects = rendered[directory]
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert names
    assert len(names) == len(set(names)), "an object is rendered twice"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_deploys_each_service_in_one_namespace(rendered: Rendered, overlay: str) -> None:
    objects = rendered[overlay]
    for role in ("receiver", "worker"):
        one(objects, "Deployment", f"outgrow-braze-{role}")
        one(objects, "PodDisruptionBudget", f"outgrow-braze-{role}")
    one(objects, "Service", "outgrow-braze-receiver")
    one(objects, "HorizontalPodAutoscaler", "outgrow-braze-receiver")
    one(objects, "ScaledObject", "outgrow-braze-worker")
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    (namespace,) = namespaces
    assert namespace and one(objects, "Namespace", namespace)


@pytest.mark.parametrize("directory", ["base", STRIMZI])
def test_base_and_strimzi_objects_validate(rendered: Rendered, directory: str) -> None:
    assert schema_problems(rendered[directory]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("check", list(CHECKS))
def test_overlay_passes(rendered: Rendered, overlay: str, check: str) -> None:
    assert CHECKS[check](rendered, overlay) == []


def test_production_exercises_strimzi_secrets_and_ingress(rendered: Rendered) -> None:
    # Otherwise the topic, ACL, credential and ingress checks would pass on nothing.
    assert uses_strimzi(rendered, "production")
    assert not uses_strimzi(rendered, "dev")
    for kind in ("SecretStore", "ExternalSecret", "TriggerAuthentication", "Ingress"):
        assert find(rendered["production"], kind), kind
    _, _, worker = the_role(rendered["production"], "worker")
    assert effective(worker, "KAFKA_SECURITY_PROTOCOL") == "SASL_SSL"


def test_mapping_copy_is_the_shipped_mapping() -> None:
    copied = KUBERNETES / "base" / "mapping.yaml"
    assert copied.read_text() == SHIPPED_MAPPING.read_text(), (
        f"copy {SHIPPED_MAPPING.relative_to(ROOT)} to {copied.relative_to(ROOT)}"
    )


def test_receiver_and_worker_must_read_one_mapping(rendered: Rendered) -> None:
    broken = copy.deepcopy(rendered)
    objects = broken["dev"]
    pod, _, _ = the_role(objects, "receiver")
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    twin = copy.deepcopy(one(objects, "ConfigMap", volume["configMap"]["name"]))
    twin["metadata"]["name"] = "outgrow-braze-receiver-mapping"
    objects.append(twin)
    volume["configMap"]["name"] = twin["metadata"]["name"]
    assert mapping_problems(rendered, "dev") == []
    (problem,) = mapping_problems(broken, "dev")
    assert problem.startswith("receiver and worker read different mappings")


def test_readme_lists_the_secrets_made_elsewhere() -> None:
    assert "outgrow-braze-receiver-tls" in documented_external_secrets()


class Break(NamedTuple):
    """A change that must make a check fail: set `path` of an object to `value`, or delete it."""

    check: str
    where: str  # the overlay, or STRIMZI: then the production overlay is checked
    kind: str
    name: str  # kustomize's hash suffix aside
    path: str  # dotted; `\\.` is a dot inside a key
    value: Any  # DROP deletes


DROP = "DROP"
# check, where, kind, name (less "outgrow-braze-"), path, value (YAML); {...} as in PATHS.
BREAK_TABLE = r"""
schemas     production ScaledObject worker spec.maxReplicas 3
schemas     dev        Deployment worker {c}.livenessProbe.httpGet.paht /healthz
unknown-env dev        ConfigMap worker-settings data.BRAZE_RATE "1"
values      dev        ConfigMap worker-settings data.BRAZE_RATE_SHARE "2"
values      production ConfigMap settings data.KAFKA_SASL_MECHANISM SCRAM
required    dev        Deployment worker {c}.env DROP
required    production Deployment receiver {c}.env.1 DROP
required    production Deployment receiver {c}.env.2 DROP
commands    dev        Deployment worker {c}.args [workers]
commands    dev        Deployment worker {c}.args [receiver]
commands    dev        Deployment sandbox {c}.image {sandbox_image}
commands    dev        Deployment sandbox {c}.image {image}:0.1.0
commands    dev        Deployment worker {c}.image {sandbox_image}:0.1.0
drain       dev        Deployment receiver {pod}.terminationGracePeriodSeconds 30
drain       dev        ConfigMap worker-settings data.WORKER_DRAIN_TIMEOUT_S "60"
drain       dev        Deployment receiver {c}.lifecycle DROP
probes      dev        ConfigMap worker-settings data.WORKER_PORT "9000"
probes      dev        Deployment receiver {c}.readinessProbe.httpGet.path /ready
security    production Deployment worker {c}.securityContext.readOnlyRootFilesystem DROP
security    dev        Deployment receiver {c}.securityContext.runAsUser 0
security    dev        Deployment worker {pod}.volumes.0.emptyDir DROP
resources   dev        Deployment worker {c}.resources.limits DROP
secrets     production Deployment worker {c}.env.2.valueFrom.secretKeyRef.key apikey
secrets     dev        Deployment worker {c}.env.0.valueFrom.secretKeyRef.name braze
files       production ConfigMap settings data.KAFKA_SSL_CA_FILE /etc/ca.pem
selectors   dev        PodDisruptionBudget worker spec.selector.matchLabels.x "y"
selectors   dev        Service receiver spec.ports.0.targetPort web
scaling     dev        Deployment worker spec.replicas 2
keda        production ScaledObject worker spec.maxReplicaCount 13
keda        dev        ConfigMap worker-settings data.CONSUMER_GROUP other
keda        production ScaledObject worker spec.triggers.0.metadata.tls DROP
keda        production ScaledObject worker {scale_down}.stabilizationWindowSeconds 60
keda        production TriggerAuthentication worker-kafka spec.secretTargetRef.2 DROP
topics      strimzi    KafkaTopic outgrow-events-raw spec.config.retention\.ms 86400000
topics      strimzi    KafkaTopic outgrow-events-dlq spec.topicName dlq
topics      strimzi    KafkaTopic outgrow-braze-state spec.partitions 6
topics      strimzi    KafkaTopic outgrow-braze-state spec.config.cleanup\.policy delete
topics      strimzi    KafkaTopic outgrow-braze-state spec.config.retention\.ms DROP
topics      strimzi    KafkaTopic outgrow-braze-state spec.topicName state
topics      strimzi    KafkaTopic outgrow-events-raw spec.partitions 24
acls        strimzi    KafkaUser worker spec.authorization.acls.2 DROP
acls        strimzi    KafkaUser receiver spec.authorization.acls.1 DROP
acls        strimzi    KafkaUser worker spec.authorization.acls.3.operations [Read, Describe]
acls        strimzi    KafkaUser worker spec.authorization.acls.3.operations [Write, Describe]
acls        production ExternalSecret kafka-worker spec.target.template.data.username x
credentials strimzi    Role kafka-credentials-reader rules.0.resourceNames.2 DROP
credentials strimzi    RoleBinding kafka-credentials-reader subjects.0.namespace x
ingress     production Ingress receiver spec.rules.0.http.paths.0.path /
ingress     production Ingress receiver {body_size} 1m
sizes       dev        ConfigMap receiver-settings data.RECEIVER_MAX_BODY_BYTES "2097152"
mapping     dev        ConfigMap mapping data.mapping\.yaml "version: 1"
mapping     dev        Deployment worker {c}.volumeMounts.1.readOnly false
mapping     dev        Deployment receiver {c}.volumeMounts.1 DROP
mapping     dev        Deployment receiver {c}.volumeMounts.1.readOnly false
state       dev        ConfigMap worker-settings data.STATE_DIR DROP
state       dev        ConfigMap worker-settings data.STATE_DIR /tmp/state
state       dev        Deployment worker {pod}.volumes.2.emptyDir.sizeLimit DROP
state       dev        Deployment worker {pod}.volumes.2.emptyDir.medium Memory
state       dev        Deployment worker {c}.volumeMounts.2.readOnly true
images      production Deployment worker {c}.image {image}:0.0.9
proxy       egress-proxy ConfigMap worker-settings data.NO_PROXY localhost,.cluster.local
proxy       egress-proxy NetworkPolicy worker-braze-egress spec.egress.0.ports.0.port 443
files       egress-proxy ConfigMap worker-settings data.BRAZE_CA_FILE /etc/outgrow-braze/ca.pem
"""
PATHS = {
    "pod": "spec.template.spec",
    "c": "spec.template.spec.containers.0",
    "image": IMAGE,
    "sandbox_image": SANDBOX_IMAGE,
    "scale_down": "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown",
    "body_size": r"metadata.annotations.nginx\.ingress\.kubernetes\.io/proxy-body-size",
}


def _break(line: str) -> Break:
    check, where, kind, name, path, value = line.split(maxsplit=5)
    name = name if name.startswith("outgrow-") else f"outgrow-braze-{name}"
    return Break(
        check, where, kind, name, path.format(**PATHS), yaml.safe_load(value.format(**PATHS))
    )


BREAKS = [_break(line) for line in BREAK_TABLE.strip().splitlines()]


def apply_break(rendered: Rendered, change: Break) -> None:
    """Make the change in a rendered copy; a name also matches with kustomize's hash suffix."""
    hashed = re.compile(re.escape(change.name) + r"(-[a-z0-9]{10})?")
    (target,) = [
        obj
        for obj in rendered[change.where]
        if obj["kind"] == change.kind and hashed.fullmatch(obj["metadata"]["name"])
    ]
    *parents, last = [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", change.path)]
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    key: Any = int(last) if isinstance(target, list) else last
    if change.value == DROP:
        del target[key]
    else:
        target[key] = change.value


@pytest.mark.parametrize("change", BREAKS, ids=lambda b: f"{b.check}-{b.path.rsplit('.', 1)[-1]}")
def test_check_finds_the_broken_copy(rendered: Rendered, change: Break) -> None:
    broken = copy.deepcopy(rendered)
    apply_break(broken, change)
    overlay = "production" if change.where == STRIMZI else change.where
    assert CHECKS[change.check](broken, overlay) != []
    assert CHECKS[change.check](rendered, overlay) == []
