"""Offline checks of the model servers and the Beam-job manifests in k8s/, beyond their schemas.

The schemas (test_manifests.py) accept a Service that selects no pod, a probe on the wrong path
or an HPA aimed at a Deployment that does not exist; each of those only shows in a cluster. The
checks here are functions that return the problems they find, so that each test can also break
a copy of the manifests on purpose and see the problem reported.
"""

import copy
import re
from pathlib import Path

import apache_beam
import pytest
from apache_beam.options.pipeline_options import (FlinkRunnerOptions, GoogleCloudOptions, PipelineOptions,
                                                  PortableOptions, StandardOptions, WorkerOptions)

from tests.k8s.test_manifests import (MANIFESTS, TRAINER_IMAGE, argv, image_repository_and_tag, is_llmrec,
                                      mounted_volume, pod_specs)
from tfrs_llmrec.cli.main import STAGE_BY_NAME, build_parser

DOCS = [doc for _, doc in MANIFESTS]
TF_SERVING_REPOSITORY = "tensorflow/serving"
FLINK_REPOSITORY = "flink"
JOB_SERVER_IMAGE = re.compile(r"^apache/beam_flink(?P<flink>\d+\.\d+)_job_server$")
BEAM_STAGES = {"data", "features"}  # the commands that run Beam pipelines
SCANN_SUFFIX = "-scann"


# ------------------------------------------------------------------------------------- helpers


def of_kind(docs, kind):
    return [doc for doc in docs if doc["kind"] == kind]


def by_name(docs, kind):
    return {doc["metadata"]["name"]: doc for doc in of_kind(docs, kind)}


def pod_template(doc):
    return doc["spec"]["template"]


def pod_labels(doc):
    return pod_template(doc).get("metadata", {}).get("labels", {})


def selects(selector, labels):
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def selected_deployments(docs, selector):
    return [doc for doc in of_kind(docs, "Deployment") if selects(selector, pod_labels(doc))]


def containers(doc):
    return [(spec, container) for _, spec in pod_specs(doc) for container in spec["containers"]]


def flags(tokens):
    """--key=value and `--key value` pairs (the last one wins, as in the programs' parsers)."""
    found = {}
    for index, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        if "=" in token:
            key, value = token.split("=", 1)
            found[key] = value
        elif index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
            found[token] = tokens[index + 1]
    return found


def container_port(container, port):
    """The number of a probe's or Service's target port (a number or a container port's name)."""
    if isinstance(port, int):
        return port
    named = {entry.get("name"): entry["containerPort"] for entry in container.get("ports", [])}
    return named.get(port)


def service_target(docs, host, port):
    """(Deployment, container, container port) that `host:port` (a Service in k8s/) reaches, or None."""
    service = by_name(docs, "Service").get(host)
    if service is None:
        return None
    for entry in service["spec"]["ports"]:
        if entry["port"] != port:
            continue
        for deployment in selected_deployments(docs, service["spec"].get("selector")):
            for _, container in containers(deployment):
                number = container_port(container, entry.get("targetPort", entry["port"]))
                if number is not None and any(p["containerPort"] == number for p in container.get("ports", [])):
                    return deployment, container, number
    return None


def split_endpoint(endpoint):
    host, _, port = str(endpoint).rpartition(":")
    return host, int(port) if port.isdigit() else None


def resolved_env(docs, container):
    """The container's environment as the kubelet builds it; secrets stay opaque."""
    configmaps = {name: doc.get("data", {}) for name, doc in by_name(docs, "ConfigMap").items()}
    env = {}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        ref = variable.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            env[variable["name"]] = configmaps.get(ref["name"], {}).get(ref["key"])
        if "secretKeyRef" in variable.get("valueFrom", {}):
            env[variable["name"]] = "<secret>"
    return env


def expanded_argv(docs, container):
    """command + args with $(VAR) expanded from the container's env, as Kubernetes does."""
    env = resolved_env(docs, container)
    return [re.sub(r"\$\((\w+)\)", lambda match: env.get(match.group(1)) or match.group(0), token)
            for token in argv(container)]


def flink_memory_bytes(text):
    number, unit = re.fullmatch(r"(\d+)\s*([a-z]*)", text.strip().lower()).groups()
    scale = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30}[unit]
    return int(number) * scale


def quantity_bytes(text):
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text)).groups()
    scale = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}[unit]
    return int(number) * scale


def flink_properties(container):
    text = next((variable.get("value", "") for variable in container.get("env", [])
                 if variable["name"] == "FLINK_PROPERTIES"), "")
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def env_value(container, name):
    return next((variable.get("value") for variable in container.get("env", []) if variable["name"] == name), None)


# ------------------------------------------------------------------------------- model servers


def model_server(container):
    """(server, model name, model base path, REST port) of a model-server container, or None."""
    tokens = argv(container)
    if not tokens:
        return None
    if Path(tokens[0]).name == "tensorflow_model_server":
        found = flags(tokens)
        return ("tensorflow_model_server", found.get("--model_name"), found.get("--model_base_path"),
                int(found.get("--rest_api_port", 0)))
    for index, token in enumerate(tokens[:-1]):
        if is_llmrec(token) and tokens[index + 1] == "serve":
            found = flags(tokens[index + 2:])
            base = found.get("--model_base_path")
            # The served name: --model_name when given, else the base path's last component
            # (what the serving work specifies for `llmrec serve`; README, "Serving").
            name = found.get("--model_name", Path(base).name if base else None)
            return "llmrec serve", name, base, int(found.get("--port", 8501))
    return None


def model_servers(docs):
    """(Deployment, pod spec, container, model_server(...)) for every model-server container."""
    return [(doc, spec, container, server) for doc in of_kind(docs, "Deployment")
            for spec, container in containers(doc) if (server := model_server(container)) is not None]


def serving_problems(docs):
    problems = []
    servers = model_servers(docs)
    kinds = sorted(server[0] for *_, server in servers)
    if kinds != ["llmrec serve", "tensorflow_model_server"]:
        problems.append(f"expected one TF Serving and one `llmrec serve` Deployment, found {kinds}")
    names = {}
    for doc, spec, container, (kind, name, base, rest_port) in servers:
        where = f"Deployment {doc['metadata']['name']}"
        names[kind] = name
        if not name or not base:
            problems.append(f"{where}: the model name or base path is missing")
            continue
        # Readiness: the model's status endpoint on the REST port.
        probe = container.get("readinessProbe", {}).get("httpGet")
        if not probe:
            problems.append(f"{where}: no HTTP readiness probe")
        else:
            if probe.get("path") != f"/v1/models/{name}":
                problems.append(f"{where}: readiness probe path {probe.get('path')!r} is not /v1/models/{name}")
            if container_port(container, probe.get("port")) != rest_port:
                problems.append(f"{where}: readiness probe port {probe.get('port')!r} is not the REST port {rest_port}")
        if "livenessProbe" not in container:
            problems.append(f"{where}: no liveness probe")
        if rest_port not in {entry["containerPort"] for entry in container.get("ports", [])}:
            problems.append(f"{where}: the REST port {rest_port} is not a container port")
        # The models: read-only, from the claim's serving base.
        try:
            volume, _ = mounted_volume(spec, container, base)
            mount = max((m for m in container["volumeMounts"] if Path(base).is_relative_to(m["mountPath"])),
                        key=lambda m: len(m["mountPath"]))
            if "persistentVolumeClaim" not in volume or not mount.get("readOnly"):
                problems.append(f"{where}: {base} is not on a read-only mount of the claim")
        except (AssertionError, KeyError):
            problems.append(f"{where}: nothing is mounted over {base}")
        # Which server serves which model.
        repository, _ = image_repository_and_tag(container["image"])
        if kind == "tensorflow_model_server":
            if repository != TF_SERVING_REPOSITORY:
                problems.append(f"{where}: TF Serving runs {container['image']}, not the stock image")
            if SCANN_SUFFIX in base or name.endswith(SCANN_SUFFIX):
                problems.append(f"{where}: stock TF Serving cannot load the {SCANN_SUFFIX} model (ScaNN ops)")
            if Path(base).name != name:
                problems.append(f"{where}: --model_base_path {base} is not <serving base>/{name}")
        else:
            if container["image"] != TRAINER_IMAGE:
                problems.append(f"{where}: the ScaNN model server runs {container['image']}, not our image")
            if not Path(base).name.endswith(SCANN_SUFFIX):
                problems.append(f"{where}: `llmrec serve` should serve the {SCANN_SUFFIX} model, not {base}")
        # Running it safely.
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(bound, {}):
                    problems.append(f"{where}: no {resource} {bound}")
        security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        for key, wanted in (("runAsNonRoot", True), ("readOnlyRootFilesystem", True),
                            ("allowPrivilegeEscalation", False)):
            if security.get(key) is not wanted:
                problems.append(f"{where}: securityContext.{key} is not {wanted}")
    if len(names) == 2 and names["llmrec serve"] != f"{names['tensorflow_model_server']}{SCANN_SUFFIX}":
        problems.append(f"the ScaNN model {names['llmrec serve']!r} is not the main model "
                        f"{names['tensorflow_model_server']!r} + {SCANN_SUFFIX}")
    problems += deployment_selector_problems(docs)
    problems += service_problems(docs, servers)
    problems += autoscaling_problems(docs, servers)
    return problems


def deployment_selector_problems(docs):
    problems = []
    for doc in of_kind(docs, "Deployment"):
        selector = doc["spec"]["selector"].get("matchLabels", {})
        if not selects(selector, pod_labels(doc)):
            problems.append(f"Deployment {doc['metadata']['name']}: its selector does not match its pod labels")
        others = [other["metadata"]["name"] for other in selected_deployments(docs, selector) if other is not doc]
        if others:
            problems.append(f"Deployment {doc['metadata']['name']}: its selector also matches {others}")
    return problems


def service_problems(docs, servers):
    problems = []
    for service in of_kind(docs, "Service"):
        selected = selected_deployments(docs, service["spec"].get("selector"))
        if len(selected) != 1:
            problems.append(f"Service {service['metadata']['name']}: selects {len(selected)} Deployments, not one")
    for doc, _, container, (_, _, _, rest_port) in servers:
        reaching = [service for service in of_kind(docs, "Service")
                    if selects(service["spec"].get("selector"), pod_labels(doc))
                    and any(container_port(container, entry.get("targetPort", entry["port"])) == rest_port
                            for entry in service["spec"]["ports"])]
        if not reaching:
            problems.append(f"Deployment {doc['metadata']['name']}: no Service selects its pods and targets "
                            f"the REST port {rest_port}")
    return problems


def autoscaling_problems(docs, servers):
    problems = []
    deployments = by_name(docs, "Deployment")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    for hpa in hpas:
        where = f"HorizontalPodAutoscaler {hpa['metadata']['name']}"
        target = hpa["spec"]["scaleTargetRef"]
        deployment = deployments.get(target["name"])
        if (target.get("apiVersion"), target["kind"]) != ("apps/v1", "Deployment") or deployment is None:
            problems.append(f"{where}: scaleTargetRef {target} names no Deployment in k8s/")
            continue
        if "replicas" in deployment["spec"]:
            problems.append(f"{where}: Deployment {target['name']} sets replicas, which every apply would "
                            "reset under the autoscaler")
        cpu = [metric for metric in hpa["spec"].get("metrics", [])
               if metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
               and metric["resource"]["target"]["type"] == "Utilization"]
        if not cpu:
            problems.append(f"{where}: no CPU utilisation metric")
        # Utilisation is relative to the requests: without one the HPA cannot compute it.
        for _, container in containers(deployment):
            if "cpu" not in container.get("resources", {}).get("requests", {}):
                problems.append(f"{where}: container {container['name']} requests no CPU")
        for pdb in of_kind(docs, "PodDisruptionBudget"):
            if selects(pdb["spec"]["selector"].get("matchLabels"), pod_labels(deployment)):
                if pdb["spec"].get("minAvailable", 0) >= hpa["spec"].get("minReplicas", 1):
                    problems.append(f"{where}: PodDisruptionBudget {pdb['metadata']['name']} would block every "
                                    "voluntary eviction at minReplicas")
    for doc, *_ in servers:
        name = doc["metadata"]["name"]
        if not any(hpa["spec"]["scaleTargetRef"]["name"] == name for hpa in hpas):
            problems.append(f"Deployment {name}: no HorizontalPodAutoscaler")
        if not any(selects(pdb["spec"]["selector"].get("matchLabels"), pod_labels(doc))
                   for pdb in of_kind(docs, "PodDisruptionBudget")):
            problems.append(f"Deployment {name}: no PodDisruptionBudget")
    return problems


# ------------------------------------------------------------------------------------ Beam jobs


def beam_submissions(docs):
    """(Job, pod spec, container, llmrec argv, Beam options) for every Job that runs a Beam stage."""
    found = []
    for doc in of_kind(docs, "Job"):
        for spec, container in containers(doc):
            tokens = expanded_argv(docs, container)
            for index, token in enumerate(tokens[:-1]):
                if is_llmrec(token) and tokens[index + 1] in BEAM_STAGES:
                    rest = tokens[index + 1:]
                    options = [token.split("=", 1)[1] for token in rest if token.startswith("--beam-option=")]
                    options += [rest[i + 1] for i, token in enumerate(rest[:-1]) if token == "--beam-option"]
                    # Without Beam options a stage runs in its own pod (FnApiRunner), as
                    # prepare-data-job.yaml does; anything else names its runner.
                    if any(token.startswith("--beam") for token in rest):
                        found.append((doc, spec, container, rest, options))
    return found


def claim_mount(container, spec):
    """mountPath of the shared claim in a container, or None."""
    claims = {volume["name"] for volume in spec.get("volumes", []) if "persistentVolumeClaim" in volume}
    return next((mount["mountPath"] for mount in container.get("volumeMounts", []) if mount["name"] in claims), None)


def worker_pools(docs):
    """(Deployment, pod spec, worker-pool container, service port) for each Beam worker-pool sidecar."""
    found = []
    for doc in of_kind(docs, "Deployment"):
        for spec, container in containers(doc):
            tokens = argv(container)
            if "apache_beam.runners.worker.worker_pool_main" in tokens:
                found.append((doc, spec, container, int(flags(tokens).get("--service_port", 0))))
    return found


def beam_problems(docs):
    problems = []
    submissions = beam_submissions(docs)
    runners = sorted(PipelineOptions(options).view_as(StandardOptions).runner or "" for *_, options in submissions)
    for stage in BEAM_STAGES:
        for runner in ("DataflowRunner", "PortableRunner"):
            if not any(rest[0] == stage and PipelineOptions(options).view_as(StandardOptions).runner == runner
                       for *_, rest, options in submissions):
                problems.append(f"no Job runs `llmrec {stage}` with --beam-option=--runner={runner} ({runners})")
    parser = build_parser()
    for doc, spec, container, rest, options in submissions:
        where = f"Job {doc['metadata']['name']}"
        # The CLI parses the command and hands exactly these options to Beam.
        try:
            parsed = parser.parse_args(rest)
        except SystemExit:
            problems.append(f"{where}: `llmrec {' '.join(rest)}` does not parse")
            continue
        if parsed.command not in STAGE_BY_NAME or list(parsed.beam_options) != options:
            problems.append(f"{where}: the CLI would pass {parsed.beam_options} to Beam, not {options}")
        unexpanded = [token for token in rest if "$(" in token]
        if unexpanded:
            problems.append(f"{where}: no env variable for {unexpanded}")
        pipeline_options = PipelineOptions(options)
        runner = pipeline_options.view_as(StandardOptions).runner
        if runner in ("PortableRunner", "FlinkRunner"):
            problems += flink_submission_problems(docs, where, spec, container, pipeline_options)
        elif runner == "DataflowRunner":
            problems += dataflow_submission_problems(docs, where, spec, container, pipeline_options)
        else:
            problems.append(f"{where}: runner {runner!r} is not a cluster runner")
    problems += flink_cluster_problems(docs)
    return problems


def flink_submission_problems(docs, where, spec, container, options):
    problems = []
    portable = options.view_as(PortableOptions)
    job_server = service_target(docs, *split_endpoint(portable.job_endpoint))
    # The job server's defaults: job service on 8099, artifact service on 8098.
    if job_server is None or flags(argv(job_server[1])).get("--job-port", "8099") != str(job_server[2]):
        problems.append(f"{where}: --job_endpoint={portable.job_endpoint} reaches no Beam job server's job port")
    artifacts = (service_target(docs, *split_endpoint(portable.artifact_endpoint))
                 if portable.artifact_endpoint else None)
    if artifacts is None or flags(argv(artifacts[1])).get("--artifact-port", "8098") != str(artifacts[2]):
        problems.append(f"{where}: --artifact_endpoint={portable.artifact_endpoint} reaches no job server's "
                        "artifact port (the job server advertises 0.0.0.0)")
    if portable.environment_type != "EXTERNAL":
        problems.append(f"{where}: --environment_type={portable.environment_type}, not EXTERNAL (the worker pool)")
    host, port = split_endpoint(portable.environment_config or "")
    pools = [pool for pool in worker_pools(docs) if pool[3] == port]
    if host != "localhost" or not pools:
        problems.append(f"{where}: --environment_config={portable.environment_config} is no worker pool "
                        "sidecar's localhost:<--service_port>")
    for pool_doc, pool_spec, pool, _ in pools:
        pool_where = f"Deployment {pool_doc['metadata']['name']}"
        if pool["image"] != container["image"]:
            problems.append(f"{pool_where}: the worker pool runs {pool['image']}, the driver {container['image']}")
        if claim_mount(pool, pool_spec) != claim_mount(container, spec):
            problems.append(f"{pool_where}: the worker pool mounts the claim at {claim_mount(pool, pool_spec)}, "
                            f"the driver at {claim_mount(container, spec)}: the shard paths would differ")
        taskmanagers = [c for c in pool_spec["containers"] if c is not pool
                        and image_repository_and_tag(c["image"])[0] == FLINK_REPOSITORY]
        if not taskmanagers:
            problems.append(f"{pool_where}: the worker pool is not beside a Flink TaskManager")
        slots = {env_value(c, "TASK_MANAGER_NUMBER_OF_TASK_SLOTS") for c in taskmanagers}
        parallelism = options.view_as(PortableOptions).sdk_worker_parallelism
        if {str(parallelism)} != slots:
            problems.append(f"{where}: --sdk_worker_parallelism={parallelism}, but the TaskManagers have "
                            f"{slots} slots")
    return problems


def dataflow_submission_problems(docs, where, spec, container, options):
    problems = []
    cloud = options.view_as(GoogleCloudOptions)
    if not cloud.project or not cloud.region:
        problems.append(f"{where}: --project and --region are required by Dataflow")
    if not str(cloud.temp_location or "").startswith("gs://"):
        problems.append(f"{where}: --temp_location={cloud.temp_location} is not a gs:// location")
    image = options.view_as(WorkerOptions).sdk_container_image
    if image != container["image"]:
        problems.append(f"{where}: Dataflow workers would run {image}, the driver {container['image']}")
    credentials = resolved_env(docs, container).get("GOOGLE_APPLICATION_CREDENTIALS")
    secret_volumes = {volume["name"] for volume in spec.get("volumes", []) if "secret" in volume}
    if not credentials or not any(mount["name"] in secret_volumes
                                  and Path(credentials).is_relative_to(mount["mountPath"])
                                  for mount in container.get("volumeMounts", [])):
        problems.append(f"{where}: GOOGLE_APPLICATION_CREDENTIALS={credentials} is not a file of a Secret volume")
    return problems


def flink_cluster_problems(docs):
    problems = []
    flink_versions, beam_versions = set(), set()
    for doc in of_kind(docs, "Deployment"):
        for spec, container in containers(doc):
            where = f"Deployment {doc['metadata']['name']} ({container['name']})"
            repository, tag = image_repository_and_tag(container["image"])
            if repository == FLINK_REPOSITORY:
                flink_versions.add(".".join(tag.split(".")[:2]))
                address = env_value(container, "JOB_MANAGER_RPC_ADDRESS")
                if service_target(docs, address, 6123) is None:
                    problems.append(f"{where}: JOB_MANAGER_RPC_ADDRESS={address} is no Service for the RPC port 6123")
                for key, value in flink_properties(container).items():
                    if key.endswith("memory.process.size"):
                        limit = container.get("resources", {}).get("limits", {}).get("memory")
                        if limit is None or flink_memory_bytes(value) > quantity_bytes(limit):
                            problems.append(f"{where}: {key} {value} exceeds the memory limit {limit}")
            match = JOB_SERVER_IMAGE.match(repository)
            if match:
                flink_versions.add(match["flink"])
                beam_versions.add(tag)
                found = flags(argv(container))
                # Flink's REST port (rest.port) is 8081 unless configured otherwise.
                target = service_target(docs, *split_endpoint(found.get("--flink-master", "")))
                if target is None or target[2] != 8081:
                    problems.append(f"{where}: --flink-master={found.get('--flink-master')} is not a "
                                    "JobManager's REST port")
                artifacts = found.get("--artifacts-dir", "/tmp/beam-artifact-staging")
                for pool_doc, pool_spec, _, _ in worker_pools(docs):
                    for taskmanager in pool_spec["containers"]:
                        if image_repository_and_tag(taskmanager["image"])[0] != FLINK_REPOSITORY:
                            continue
                        mount = claim_mount(taskmanager, pool_spec)
                        if mount is None or not Path(artifacts).is_relative_to(mount) or \
                                claim_mount(container, spec) != mount:
                            problems.append(f"{where}: --artifacts-dir={artifacts} is not on the claim at the same "
                                            f"path in the TaskManagers of {pool_doc['metadata']['name']}")
    # Default parallelism beyond the cluster's slots leaves a batch job waiting for slots.
    slots = sum(doc["spec"].get("replicas", 1) * int(env_value(container, "TASK_MANAGER_NUMBER_OF_TASK_SLOTS") or 1)
                for doc in of_kind(docs, "Deployment") for _, container in containers(doc)
                if image_repository_and_tag(container["image"])[0] == FLINK_REPOSITORY
                and "taskmanager" in container.get("args", []))
    for doc in of_kind(docs, "Deployment"):
        for _, container in containers(doc):
            parallelism = flink_properties(container).get("parallelism.default")
            if parallelism and int(parallelism) > slots:
                problems.append(f"Deployment {doc['metadata']['name']}: parallelism.default {parallelism} exceeds "
                                f"the {slots} task slots of the TaskManagers")
    if flink_versions and len(flink_versions) != 1:
        problems.append(f"the Flink cluster and the Beam job server are for different Flink lines: {flink_versions}")
    if not flink_versions <= set(FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS):
        problems.append(f"Beam {apache_beam.__version__} has no Flink runner for {flink_versions}")
    if beam_versions and beam_versions != {apache_beam.__version__}:
        problems.append(f"the Beam job server is {beam_versions}, the SDK in our image {apache_beam.__version__}")
    return problems


# --------------------------------------------------------------------------------------- secrets

SENSITIVE_NAME = re.compile(r"(api[_-]?key|access[_-]?key|token|secret|passw(or)?d|credential|private[_-]?key)",
                            re.IGNORECASE)
SECRET_SHAPES = {
    "a PEM private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a service-account key": re.compile(r"\"private_key(_id)?\"\s*:"),
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "an OpenAI-style key": re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "a Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
}


def strings(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, path + (index,))
    elif isinstance(node, str):
        yield "/".join(map(str, path)), node


def secret_problems(docs):
    """Literal secret values anywhere in the manifests: only Secret references may carry them."""
    problems = []
    for doc in docs:
        name = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "Secret":
            problems.append(f"{name}: a Secret in k8s/ puts its value in the repository; create it with kubectl")
        for path, text in strings(doc):
            for shape, pattern in SECRET_SHAPES.items():
                if pattern.search(text):
                    problems.append(f"{name}: {path} holds {shape}")
        if doc["kind"] == "ConfigMap":
            for key in doc.get("data", {}):
                if SENSITIVE_NAME.search(key):
                    problems.append(f"{name}: data key {key!r} looks like a secret; use a Secret")
        for spec, container in containers(doc):
            secret_mounts = [mount["mountPath"] for mount in container.get("volumeMounts", [])
                             if mount["name"] in {v["name"] for v in spec.get("volumes", []) if "secret" in v}]
            secret_env = {variable["name"] for variable in container.get("env", [])
                          if "secretKeyRef" in variable.get("valueFrom", {})}
            for variable in container.get("env", []):
                if not SENSITIVE_NAME.search(variable["name"]) or "value" not in variable:
                    continue
                # A path into a mounted Secret (GOOGLE_APPLICATION_CREDENTIALS) is not the secret itself.
                if not any(Path(str(variable["value"])).is_relative_to(mount) for mount in secret_mounts):
                    problems.append(f"{name}: env {variable['name']} has a literal value; use secretKeyRef")
            # Flags and --set overrides: `--api_key=...`, `--beam-option=--api_key=...`,
            # `features.x.api_key=...`; a `*_env` key names an environment variable, not a value.
            for token in argv(container):
                key, separator, value = token.rpartition("=")
                key = key.rpartition("=")[2].lstrip("-").rpartition(".")[2]
                if (separator and SENSITIVE_NAME.search(key) and not key.endswith("_env")
                        and value not in {f"$({env})" for env in secret_env}):
                    problems.append(f"{name}: {key} is given a literal value on the command line; pass $(VAR) "
                                    "of a secretKeyRef variable")
    return problems


# ----------------------------------------------------------------------------------------- tests


def test_model_servers_are_consistent():
    assert serving_problems(DOCS) == []


def test_beam_jobs_are_consistent():
    assert beam_problems(DOCS) == []


def test_no_manifest_holds_a_literal_secret():
    assert secret_problems(DOCS) == []


def find(docs, kind, name):
    (doc,) = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return doc


def first_container(docs, kind, name):
    return pod_template(find(docs, kind, name))["spec"]["containers"][0]


def set_arg(docs, kind, name, prefix, replacement, container_index=0):
    container = pod_template(find(docs, kind, name))["spec"]["containers"][container_index]
    key = "args" if any(str(token).startswith(prefix) for token in container.get("args", [])) else "command"
    container[key] = [replacement if str(token).startswith(prefix) else token for token in container[key]]


def break_readiness_path(docs):
    first_container(docs, "Deployment", "llmrec-serving")["readinessProbe"]["httpGet"]["path"] = "/v1/models/model"


def break_readiness_port(docs):
    first_container(docs, "Deployment", "llmrec-serving-scann")["readinessProbe"]["httpGet"]["port"] = 8500


def break_model_name(docs):
    set_arg(docs, "Deployment", "llmrec-serving", "--model_name=", "--model_name=recommender")


def point_tf_serving_at_scann(docs):
    set_arg(docs, "Deployment", "llmrec-serving", "--model_base_path=", "--model_base_path=/models/llmrec-scann")
    set_arg(docs, "Deployment", "llmrec-serving", "--model_name=", "--model_name=llmrec-scann")
    first_container(docs, "Deployment", "llmrec-serving")["readinessProbe"]["httpGet"]["path"] = \
        "/v1/models/llmrec-scann"


def run_scann_on_stock_tf_serving(docs):
    first_container(docs, "Deployment", "llmrec-serving-scann")["image"] = "tensorflow/serving:2.19.1"


def break_service_selector(docs):
    find(docs, "Service", "llmrec-serving")["spec"]["selector"]["app.kubernetes.io/component"] = "model-sever"


def target_grpc_only(docs):
    find(docs, "Service", "llmrec-serving")["spec"]["ports"] = [{"name": "grpc", "port": 8500, "targetPort": "grpc"}]


def break_hpa_target(docs):
    find(docs, "HorizontalPodAutoscaler", "llmrec-serving-scann")["spec"]["scaleTargetRef"]["name"] = "llmrec-scann"


def pin_replicas_under_hpa(docs):
    find(docs, "Deployment", "llmrec-serving")["spec"]["replicas"] = 2


def mount_models_writable(docs):
    mounts = first_container(docs, "Deployment", "llmrec-serving")["volumeMounts"]
    mounts[0] = {key: value for key, value in mounts[0].items() if key != "readOnly"}


def run_as_root(docs):
    pod_template(find(docs, "Deployment", "llmrec-serving-scann"))["spec"]["securityContext"]["runAsNonRoot"] = False


def assert_caught(check, breakage, expected):
    """`check` reports `expected` on a copy of the manifests that `breakage` broke."""
    docs = copy.deepcopy(DOCS)
    breakage(docs)
    problems = check(docs)
    assert any(expected in problem for problem in problems), problems


SERVING_BREAKAGES = [
    (break_readiness_path, "readiness probe path '/v1/models/model' is not /v1/models/llmrec"),
    (break_readiness_port, "readiness probe port 8500 is not the REST port 8501"),
    (break_model_name, "readiness probe path '/v1/models/llmrec' is not /v1/models/recommender"),
    (point_tf_serving_at_scann, "stock TF Serving cannot load the -scann model"),
    (run_scann_on_stock_tf_serving, "not our image"),
    (break_service_selector, "Service llmrec-serving: selects 0 Deployments"),
    (target_grpc_only, "no Service selects its pods and targets the REST port 8501"),
    (break_hpa_target, "names no Deployment in k8s/"),
    (pin_replicas_under_hpa, "sets replicas"),
    (mount_models_writable, "is not on a read-only mount of the claim"),
    (run_as_root, "securityContext.runAsNonRoot is not True"),
]


@pytest.mark.parametrize("breakage, expected", SERVING_BREAKAGES, ids=[b.__name__ for b, _ in SERVING_BREAKAGES])
def test_serving_checks_catch(breakage, expected):
    assert_caught(serving_problems, breakage, expected)


def drop_runner(docs):
    set_arg(docs, "Job", "llmrec-features-flink", "--beam-option=--runner=", "--beam-option=--streaming")


def misspell_beam_option_flag(docs):
    set_arg(docs, "Job", "llmrec-data-flink", "--beam-option=--runner=", "--beam_option=--runner=PortableRunner")


def wrong_worker_pool_port(docs):
    set_arg(docs, "Job", "llmrec-data-flink", "--beam-option=--environment_config=",
            "--beam-option=--environment_config=localhost:50001")


def wrong_job_endpoint(docs):
    set_arg(docs, "Job", "llmrec-data-flink", "--beam-option=--job_endpoint=",
            "--beam-option=--job_endpoint=llmrec-beam-job-server:8098")


def drop_artifact_endpoint(docs):
    set_arg(docs, "Job", "llmrec-data-flink", "--beam-option=--artifact_endpoint=", "--beam-option=--streaming")


def mismatched_job_server(docs):
    first_container(docs, "Deployment", "llmrec-beam-job-server")["image"] = "apache/beam_flink1.20_job_server:2.70.0"


def mismatched_flink_line(docs):
    containers_ = pod_template(find(docs, "Deployment", "llmrec-flink-taskmanager"))["spec"]["containers"]
    containers_[0]["image"] = "flink:1.19.3-scala_2.12-java17"


def flink_over_its_limit(docs):
    taskmanager = pod_template(find(docs, "Deployment", "llmrec-flink-taskmanager"))["spec"]["containers"][0]
    taskmanager["resources"]["limits"]["memory"] = "2Gi"


def fewer_taskmanagers(docs):
    find(docs, "Deployment", "llmrec-flink-taskmanager")["spec"]["replicas"] = 1


def dataflow_temp_on_local_disk(docs):
    find(docs, "ConfigMap", "llmrec-dataflow")["data"]["temp_location"] = "/tmp/dataflow"


def dataflow_unset_variable(docs):
    first_container(docs, "Job", "llmrec-data-dataflow")["env"] = [
        variable for variable in first_container(docs, "Job", "llmrec-data-dataflow")["env"]
        if variable["name"] != "DATAFLOW_REGION"]


BEAM_BREAKAGES = [
    (drop_runner, "`llmrec features` with --beam-option=--runner=PortableRunner"),
    (misspell_beam_option_flag, "does not parse"),
    (wrong_worker_pool_port, "is no worker pool sidecar's localhost"),
    (wrong_job_endpoint, "reaches no Beam job server's job port"),
    (drop_artifact_endpoint, "--artifact_endpoint=None reaches no job server's artifact port"),
    (mismatched_job_server, "the SDK in our image"),
    (mismatched_flink_line, "different Flink lines"),
    (flink_over_its_limit, "exceeds the memory limit 2Gi"),
    (fewer_taskmanagers, "parallelism.default 4 exceeds the 2 task slots"),
    (dataflow_temp_on_local_disk, "is not a gs:// location"),
    (dataflow_unset_variable, "no env variable for ['--beam-option=--region=$(DATAFLOW_REGION)']"),
]


@pytest.mark.parametrize("breakage, expected", BEAM_BREAKAGES, ids=[b.__name__ for b, _ in BEAM_BREAKAGES])
def test_beam_checks_catch(breakage, expected):
    assert_caught(beam_problems, breakage, expected)


def inline_api_key(docs):
    first_container(docs, "Job", "llmrec-features-flink").setdefault("env", []).append(
        {"name": "OPENAI_API_KEY", "value": "not-a-real-key"})


def inline_key_flag(docs):
    first_container(docs, "Job", "llmrec-data-dataflow")["command"].append("--beam-option=--api_key=abc123")


def inline_key_override(docs):
    first_container(docs, "Job", "llmrec-features-flink")["command"] += [
        "--set", "features.llm.endpoint.api_key_env=OPENAI_API_KEY", "--set", "features.llm.endpoint.api_key=abc"]


def key_in_configmap(docs):
    find(docs, "ConfigMap", "llmrec-dataflow")["data"]["key.json"] = (
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMII...\\n"}')


def secret_object(docs):
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llmrec-gcp-credentials"},
                 "stringData": {"key.json": "{}"}})


SECRET_BREAKAGES = [
    (inline_api_key, "env OPENAI_API_KEY has a literal value"),
    (inline_key_flag, "api_key is given a literal value on the command line"),
    (inline_key_override, "api_key is given a literal value on the command line"),
    (key_in_configmap, "holds a PEM private key"),
    (secret_object, "a Secret in k8s/"),
]


@pytest.mark.parametrize("breakage, expected", SECRET_BREAKAGES, ids=[b.__name__ for b, _ in SECRET_BREAKAGES])
def test_secret_check_catches(breakage, expected):
    assert_caught(secret_problems, breakage, expected)


def test_scann_server_command_parses_with_the_cli():
    """`llmrec serve --model_base_path DIR --port N` as the real CLI parses it."""
    container = first_container(DOCS, "Deployment", "llmrec-serving-scann")
    tokens = argv(container)
    rest = tokens[[is_llmrec(token) for token in tokens].index(True) + 1:]
    parsed = build_parser().parse_args(rest)
    _, name, base, port = model_server(container)
    assert parsed.command == "serve"
    assert parsed.model_base_path == base and parsed.port == port
    assert parsed.model_name in (None, name)
    if parsed.model_name is None:
        assert base.rstrip("/").rsplit("/", 1)[-1] == name  # the server names the model after its directory
