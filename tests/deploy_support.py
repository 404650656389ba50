"""Helpers for the deployment tests: the settings the code knows, a pinned kustomize, manifests.

`python -m tests.deploy_support` builds and caches the pinned kustomize (`make kustomize` runs
it), so that a test run never waits for the build.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo

from connector import config
from connector.http_client import PROXY_VARIABLES
from outgrow_braze_dev.settings import EVERY_GROUP

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"

# Built from the Go module proxy and pinned, so every machine renders alike (kubectl 1.32 embeds
# the same version). KUSTOMIZE=/path/to/kustomize uses another binary instead.
KUSTOMIZE_VERSION = "v5.5.0"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"

Manifest = dict[str, Any]


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One setting of the connector or its sandbox: its variable, its group and its field."""

    env: str
    group: type[Any]
    field: FieldInfo

    @property
    def default(self) -> Any:
        """Return the value the code uses when the variable is unset (None: unset)."""
        value = self.field.default
        return value.get_secret_value() if hasattr(value, "get_secret_value") else value

    def parse(self, text: str) -> Any:
        """Read the variable's text as the code does: type and bounds (ValidationError if not)."""
        field = self.field
        kind = (
            Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        )
        return TypeAdapter(kind).validate_strings(text)


def settings() -> dict[str, Setting]:
    """Return every setting the code reads, by environment variable: the connector's, and the
    sandbox's, which the dev overlay runs from the development image."""
    return {
        config.env_name(name): Setting(config.env_name(name), group, field)
        for group in EVERY_GROUP
        for name, field in group.model_fields.items()
    }


def known_setting_names() -> frozenset[str]:
    """Return the environment variables the code reads, its settings and the standard proxy
    variables its HTTP clients honour; it ignores any other without a word."""
    return frozenset(settings()) | frozenset(PROXY_VARIABLES)


# --------------------------------------------------------------------------- kustomize


def cache_dir() -> Path:
    """Return where built tools are cached (beside the local broker's Kafka jars)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "outgrow-braze" / "bin"


def kustomize() -> Path:
    """Return the pinned kustomize binary, building it with Go on first use."""
    override = os.environ.get("KUSTOMIZE")
    if override:
        return Path(override)
    binary = cache_dir() / f"kustomize-{KUSTOMIZE_VERSION}"
    if not binary.is_file():
        build_kustomize(binary)
    return binary


def build_kustomize(target: Path) -> None:
    """Build kustomize from the Go module proxy into `target`, atomically (runs may race)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            "rendering the Kubernetes manifests needs kustomize: install Go 1.22+ (it is built "
            f"from {KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}) or set KUSTOMIZE=/path/to/kustomize"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        env = {**os.environ, "GOBIN": scratch, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
        done = subprocess.run(
            [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"go install of kustomize failed:\n{done.stderr}")
        os.replace(Path(scratch) / "kustomize", target)


def render(directory: Path) -> list[Manifest]:
    """Return the objects `kustomize build` makes of a directory."""
    done = subprocess.run(
        [str(kustomize()), "build", str(directory)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"kustomize build {directory} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# --------------------------------------------------------------------------- manifests


def find(objects: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    """Return the objects of a kind (and name)."""
    return [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def one(objects: list[Manifest], kind: str, name: str) -> Manifest:
    """Return the one object of that kind and name."""
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_templates(objects: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """Yield (workload, pod template) for every object that runs pods."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj, obj["spec"]["template"]
        elif obj["kind"] == "CronJob":
            yield obj, obj["spec"]["jobTemplate"]["spec"]["template"]


def containers(objects: list[Manifest]) -> Iterator[tuple[Manifest, Manifest, Manifest]]:
    """Yield (workload, pod spec, container) for every container, init containers included."""
    for workload, template in pod_templates(objects):
        pod = template["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield workload, pod, container


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Say whether matchLabels select an object with these labels."""
    return all(labels.get(key) == value for key, value in selector.items())


@dataclass(frozen=True)
class FromSecret:
    """A variable whose value is a Secret's key, known only in the cluster."""

    name: str
    key: str
    optional: bool = False


def container_env(container: Manifest, objects: list[Manifest]) -> dict[str, Any]:
    """Return a container's variables: text, or FromSecret, as Kubernetes resolves them."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):  # later sources win, `env` over all
        if "configMapRef" in source:
            env.update(configmap_data(objects, source["configMapRef"]["name"]))
        else:
            name = source["secretRef"]["name"]
            env.update({key: FromSecret(name, key) for key in provided_secrets(objects)[name]})
    for var in container.get("env", []):
        env[var["name"]] = _env_value(var, objects)
    return env


def _env_value(var: Manifest, objects: list[Manifest]) -> Any:
    if "value" in var:
        return var["value"]
    source = var["valueFrom"]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        return FromSecret(ref["name"], ref["key"], ref.get("optional", False))
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return configmap_data(objects, ref["name"])[ref["key"]]
    return source  # fieldRef, resourceFieldRef: known only at run time


def effective(env: dict[str, Any], name: str) -> Any:
    """Return what the code will use for a setting: the manifest's text parsed, or its default."""
    value = env.get(name)
    setting = settings()[name]
    return setting.parse(value) if isinstance(value, str) else setting.default


def configmap_data(objects: list[Manifest], name: str) -> dict[str, str]:
    """Return a rendered ConfigMap's data."""
    return dict(one(objects, "ConfigMap", name).get("data", {}))


def provided_secrets(objects: list[Manifest]) -> dict[str, set[str]]:
    """Return the Secrets made by these objects, directly or by ExternalSecrets, with their keys."""
    provided: dict[str, set[str]] = {}
    for secret in find(objects, "Secret"):
        keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
        provided[secret["metadata"]["name"]] = keys
    for external in find(objects, "ExternalSecret"):
        target = external["spec"].get("target", {})
        template = target.get("template", {})
        fetched = {item["secretKey"] for item in external["spec"].get("data", [])}
        # A template's data replaces what was fetched, unless it says to merge.
        keys = set(template.get("data", {})) or fetched
        if template.get("data") and template.get("mergePolicy") == "Merge":
            keys |= fetched
        provided[target.get("name", external["metadata"]["name"])] = keys
    return provided


def secret_value(objects: list[Manifest], ref: FromSecret) -> str | None:
    """Return a Secret key's value when the manifests fix it (a literal), else None."""
    for external in find(objects, "ExternalSecret"):
        target = external["spec"]["target"]
        if target.get("name", external["metadata"]["name"]) == ref.name:
            value = target.get("template", {}).get("data", {}).get(ref.key)
            return value if value is not None and "{{" not in value else None
    for secret in find(objects, "Secret", ref.name):
        if ref.key in secret.get("data", {}):
            return base64.b64decode(secret["data"][ref.key]).decode()
    return None


def mounted_key(pod: Manifest, container: Manifest, path: str) -> tuple[Manifest, str] | None:
    """Return the volume that puts a file at `path` in the container, and the file's key in it."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix) and "subPath" not in mount:
            volume = volumes[mount["name"]]
            source = volume.get("configMap") or volume.get("secret") or {}
            relative = path[len(prefix) :]
            items = {item["path"]: item["key"] for item in source.get("items", [])}
            return volume, items.get(relative, "") if items else relative
    return None


# --------------------------------------------------------------------------- custom resources

# JSON Schemas of the custom resources' fields these manifests use, after the CRDs of Strimzi 0.4x
# (v1beta2), KEDA 2.1x and the External Secrets Operator 0.1x (v1beta1). Strict where a typo
# would be lost without a word: the API server drops fields a CRD does not declare.
CUSTOM_RESOURCE_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    tuple(key.split(" ")): schema  # type: ignore[misc]
    for key, schema in yaml.safe_load(
        """
kafka.strimzi.io/v1beta2 KafkaTopic:
  type: object
  required: [metadata, spec]
  properties:
    metadata: &strimzi_metadata
      type: object
      required: [name, labels]
      properties:
        labels:
          type: object
          required: [strimzi.io/cluster]
    spec:
      type: object
      required: [partitions, replicas, config]
      additionalProperties: false
      properties:
        topicName: {type: string}
        partitions: {type: integer, minimum: 1}
        replicas: {type: integer, minimum: 1, maximum: 32767}
        config: {type: object}
kafka.strimzi.io/v1beta2 KafkaUser:
  type: object
  required: [metadata, spec]
  properties:
    metadata: *strimzi_metadata
    spec:
      type: object
      required: [authentication, authorization]
      additionalProperties: false
      properties:
        authentication:
          type: object
          required: [type]
          properties:
            type:
              enum: [tls, tls-external, scram-sha-512]
        authorization:
          type: object
          required: [type, acls]
          additionalProperties: false
          properties:
            type:
              enum: [simple]
            acls:
              type: array
              items:
                type: object
                required: [resource, operations]
                additionalProperties: false
                properties:
                  type:
                    enum: [allow, deny]
                  host: {type: string}
                  resource:
                    type: object
                    required: [type]
                    additionalProperties: false
                    properties:
                      type:
                        enum: [topic, group, cluster, transactionalId]
                      name: {type: string}
                      patternType:
                        enum: [literal, prefix]
                  operations:
                    type: array
                    minItems: 1
                    items:
                      enum: [Read, Write, Create, Delete, Alter, Describe, ClusterAction,
                        AlterConfigs, DescribeConfigs, IdempotentWrite, All]
        quotas: {type: object}
        template: {type: object}
keda.sh/v1alpha1 ScaledObject:
  type: object
  required: [spec]
  properties:
    spec:
      type: object
      required: [scaleTargetRef, triggers]
      additionalProperties: false
      properties:
        scaleTargetRef:
          type: object
          required: [name]
          properties:
            name: {type: string}
            apiVersion: {type: string}
            kind: {type: string}
          additionalProperties: false
        pollingInterval: {type: integer, minimum: 1}
        cooldownPeriod: {type: integer, minimum: 0}
        minReplicaCount: {type: integer, minimum: 0}
        maxReplicaCount: {type: integer, minimum: 1}
        fallback:
          type: object
          required: [failureThreshold, replicas]
          additionalProperties: false
          properties:
            failureThreshold: {type: integer, minimum: 1}
            replicas: {type: integer, minimum: 0}
        advanced:
          type: object
          additionalProperties: false
          properties:
            restoreToOriginalReplicaCount: {type: boolean}
            horizontalPodAutoscalerConfig:
              type: object
              additionalProperties: false
              properties:
                name: {type: string}
                behavior: {type: object}
        triggers:
          type: array
          minItems: 1
          items:
            type: object
            required: [type, metadata]
            additionalProperties: false
            properties:
              type: {type: string}
              name: {type: string}
              metadata:
                type: object
                additionalProperties: {type: string}
              authenticationRef:
                type: object
                required: [name]
                properties:
                  name: {type: string}
                  kind:
                    enum: [TriggerAuthentication, ClusterTriggerAuthentication]
                additionalProperties: false
keda.sh/v1alpha1 TriggerAuthentication:
  type: object
  required: [spec]
  properties:
    spec:
      type: object
      additionalProperties: false
      properties:
        secretTargetRef:
          type: array
          items:
            type: object
            required: [parameter, name, key]
            additionalProperties: false
            properties:
              parameter: {type: string}
              name: {type: string}
              key: {type: string}
external-secrets.io/v1beta1 ExternalSecret:
  type: object
  required: [spec]
  properties:
    spec:
      type: object
      required: [secretStoreRef, target]
      additionalProperties: false
      properties:
        refreshInterval: {type: string}
        secretStoreRef:
          type: object
          required: [name]
          properties:
            name: {type: string}
            kind:
              enum: [SecretStore, ClusterSecretStore]
          additionalProperties: false
        target:
          type: object
          additionalProperties: false
          properties:
            name: {type: string}
            creationPolicy:
              enum: [Owner, Orphan, Merge, None]
            deletionPolicy:
              enum: [Delete, Merge, Retain]
            template:
              type: object
              additionalProperties: false
              properties:
                engineVersion:
                  enum: [v1, v2]
                mergePolicy:
                  enum: [Replace, Merge]
                type: {type: string}
                data:
                  type: object
                  additionalProperties: {type: string}
        data:
          type: array
          items:
            type: object
            required: [secretKey, remoteRef]
            additionalProperties: false
            properties:
              secretKey: {type: string}
              remoteRef:
                type: object
                required: [key]
                properties:
                  key: {type: string}
                  property: {type: string}
external-secrets.io/v1beta1 SecretStore:
  type: object
  required: [spec]
  properties:
    spec:
      type: object
      required: [provider]
      properties:
        provider:
          type: object
          minProperties: 1
          maxProperties: 1
          properties:
            kubernetes:
              type: object
              required: [auth]
              additionalProperties: false
              properties:
                remoteNamespace: {type: string}
                server: {type: object}
                auth: {type: object, minProperties: 1, maxProperties: 1}
"""
    ).items()
}


if __name__ == "__main__":
    # `go install` builds call themselves "(devel)"; the file name carries the version instead.
    print(f"kustomize {KUSTOMIZE_VERSION}: {kustomize()}", file=sys.stderr)
