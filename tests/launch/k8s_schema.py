"""The parts of the Kubernetes API that a Tessera JobSet uses, written down from the published
API reference (JobSet jobset.x-k8s.io/v1alpha2 `jobset_types.go`; batch/v1 Job; core/v1 Pod,
Container, EnvVar, Volume, ConfigMap), and a checker: every field must exist in its type,
with the right type and enum value, and every required field must be there.

Only fields the API defines are listed; fields the API has but Tessera does not write are
listed where cheap, so the checker refuses typos, not features.
"""

from __future__ import annotations

from typing import Any

STRING, INTEGER, BOOLEAN = "string", "integer", "boolean"


def obj(required: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    return {"fields": fields, "required": required}


def array(item: Any) -> tuple[str, Any]:
    return ("array", item)


def string_map() -> tuple[str, Any]:
    return ("map", STRING)


def enum(*values: str) -> tuple[str, Any]:
    return ("enum", values)


OBJECT_META = obj(
    name=STRING,
    namespace=STRING,
    labels=string_map(),
    annotations=string_map(),
    generateName=STRING,
)
ENV_VAR = obj(
    ("name",),
    name=STRING,
    value=STRING,
    valueFrom=obj(
        fieldRef=obj(("fieldPath",), fieldPath=STRING, apiVersion=STRING),
        configMapKeyRef=obj(("key",), key=STRING, name=STRING, optional=BOOLEAN),
        secretKeyRef=obj(("key",), key=STRING, name=STRING, optional=BOOLEAN),
    ),
)
CONTAINER = obj(
    ("name",),
    name=STRING,
    image=STRING,
    command=array(STRING),
    args=array(STRING),
    workingDir=STRING,
    env=array(ENV_VAR),
    ports=array(
        obj(
            ("containerPort",),
            containerPort=INTEGER,
            name=STRING,
            protocol=enum("TCP", "UDP", "SCTP"),
            hostPort=INTEGER,
        )
    ),
    resources=obj(limits=string_map(), requests=string_map()),
    volumeMounts=array(
        obj(
            ("name", "mountPath"),
            name=STRING,
            mountPath=STRING,
            readOnly=BOOLEAN,
            subPath=STRING,
        )
    ),
    imagePullPolicy=enum("Always", "Never", "IfNotPresent"),
)
VOLUME = obj(
    ("name",),
    name=STRING,
    persistentVolumeClaim=obj(("claimName",), claimName=STRING, readOnly=BOOLEAN),
    emptyDir=obj(medium=STRING, sizeLimit=STRING),
    configMap=obj(name=STRING, items=array(obj(("key", "path"), key=STRING, path=STRING))),
    hostPath=obj(("path",), path=STRING, type=STRING),
)
POD_SPEC = obj(
    ("containers",),
    containers=array(CONTAINER),
    initContainers=array(CONTAINER),
    restartPolicy=enum("Always", "OnFailure", "Never"),
    volumes=array(VOLUME),
    nodeSelector=string_map(),
    serviceAccountName=STRING,
    subdomain=STRING,
    hostname=STRING,
    terminationGracePeriodSeconds=INTEGER,
    priorityClassName=STRING,
)
JOB_SPEC = obj(
    ("template",),
    parallelism=INTEGER,
    completions=INTEGER,
    completionMode=enum("NonIndexed", "Indexed"),
    backoffLimit=INTEGER,
    activeDeadlineSeconds=INTEGER,
    ttlSecondsAfterFinished=INTEGER,
    template=obj(("spec",), metadata=OBJECT_META, spec=POD_SPEC),
)
REPLICATED_JOB = obj(
    ("name", "template"),
    name=STRING,
    groupName=STRING,
    replicas=INTEGER,
    template=obj(("spec",), metadata=OBJECT_META, spec=JOB_SPEC),
    dependsOn=array(obj(("name", "status"), name=STRING, status=enum("Ready", "Complete"))),
)
FAILURE_POLICY_RULE = obj(
    ("name", "action"),
    name=STRING,
    action=enum(
        "FailJobSet",
        "RestartJobSet",
        "RestartJobSetAndIgnoreMaxRestarts",
        "RestartJob",
        "RestartJobAndIgnoreMaxRestarts",
    ),
    onJobFailureReasons=array(STRING),
    onJobFailureMessagePatterns=array(STRING),
    targetReplicatedJobs=array(STRING),
)
JOBSET = obj(
    ("apiVersion", "kind", "metadata", "spec"),
    apiVersion=enum("jobset.x-k8s.io/v1alpha2"),
    kind=enum("JobSet"),
    metadata=OBJECT_META,
    spec=obj(
        ("replicatedJobs",),
        replicatedJobs=array(REPLICATED_JOB),
        network=obj(enableDNSHostnames=BOOLEAN, subdomain=STRING, publishNotReadyAddresses=BOOLEAN),
        successPolicy=obj(
            ("operator",), operator=enum("All", "Any"), targetReplicatedJobs=array(STRING)
        ),
        failurePolicy=obj(
            maxRestarts=INTEGER,
            restartStrategy=enum("Recreate", "BlockingRecreate", "InPlaceRestart"),
            rules=array(FAILURE_POLICY_RULE),
        ),
        suspend=BOOLEAN,
        coordinator=obj(
            ("replicatedJob",), replicatedJob=STRING, jobIndex=INTEGER, podIndex=INTEGER
        ),
        managedBy=STRING,
        ttlSecondsAfterFinished=INTEGER,
    ),
)
CONFIG_MAP = obj(
    ("apiVersion", "kind", "metadata"),
    apiVersion=enum("v1"),
    kind=enum("ConfigMap"),
    metadata=OBJECT_META,
    data=string_map(),
    immutable=BOOLEAN,
)
SCHEMAS = {"JobSet": JOBSET, "ConfigMap": CONFIG_MAP}


def problems(document: Any, schema: Any = None, where: str = "") -> list[str]:
    """Every way `document` breaks `schema` (by default, the schema of its `kind`)."""
    if schema is None:
        kind = document.get("kind") if isinstance(document, dict) else None
        if kind not in SCHEMAS:
            return [f"kind {kind!r} is not one of {sorted(SCHEMAS)}"]
        schema = SCHEMAS[kind]
    found: list[str] = []
    if schema == STRING:
        if not isinstance(document, str):
            found.append(f"{where}: expected a string, got {document!r}")
    elif schema == INTEGER:
        if isinstance(document, bool) or not isinstance(document, int):
            found.append(f"{where}: expected an integer, got {document!r}")
    elif schema == BOOLEAN:
        if not isinstance(document, bool):
            found.append(f"{where}: expected true or false, got {document!r}")
    elif isinstance(schema, tuple) and schema[0] == "enum":
        if document not in schema[1]:
            found.append(f"{where}: {document!r} is not one of {list(schema[1])}")
    elif isinstance(schema, tuple) and schema[0] == "array":
        if not isinstance(document, list):
            return [f"{where}: expected a list, got {document!r}"]
        for index, item in enumerate(document):
            found += problems(item, schema[1], f"{where}[{index}]")
    elif isinstance(schema, tuple) and schema[0] == "map":
        if not isinstance(document, dict):
            return [f"{where}: expected a mapping, got {document!r}"]
        for key, value in document.items():
            found += problems(value, schema[1], f"{where}.{key}")
    else:
        if not isinstance(document, dict):
            return [f"{where}: expected an object, got {document!r}"]
        for key, value in document.items():
            if key not in schema["fields"]:
                found.append(f"{where}.{key}: no such field")
            else:
                found += problems(value, schema["fields"][key], f"{where}.{key}")
        for key in schema["required"]:
            if key not in document:
                found.append(f"{where}.{key}: required field missing")
    return found
