"""Offline checks of the Kubernetes manifests in k8s/.

Schemas: core objects against the Kubernetes OpenAPI schemas bundled in `kubernetes-validate`,
Kubeflow custom resources against the operators' CRDs vendored in third_party/kubeflow/; both
reject unknown fields, as `kubectl apply` (strict field validation) does. Then the references
between objects that no schema sees but that break a deployment: volumes, the ConfigMap and its
experiment config, the claim, the Horovod rank count, the operators' own rules, the images.
The model servers and the Beam jobs have their own checks in test_serving_and_beam.py.
"""

import collections
import copy
import functools
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tfrs_llmrec.config import load_experiment

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIR = ROOT / "k8s"
CRD_DIR = ROOT / "third_party" / "kubeflow"
# The oldest Kubernetes minor release the manifests target (kubernetes-validate bundles up to 1.37).
KUBERNETES_VERSION = "1.33"
# (apiVersion, kind) -> (vendored CRD, the spec key holding the replica specs).
CUSTOM_RESOURCES = {
    ("kubeflow.org/v2beta1", "MPIJob"): (CRD_DIR / "mpi-operator" / "kubeflow.org_mpijobs.yaml", "mpiReplicaSpecs"),
    ("kubeflow.org/v1", "TFJob"): (CRD_DIR / "training-operator" / "kubeflow.org_tfjobs.yaml", "tfReplicaSpecs"),
}
# The MPI operator adds these volumes and mounts (ssh keys, hostfile) to the pods it creates.
MPI_OPERATOR_VOLUMES = {"ssh-auth", "mpi-job-config"}
MPI_OPERATOR_MOUNTS = {"/root/.ssh", "/etc/mpi"}
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def load_manifests():
    documents = []
    for path in sorted(MANIFEST_DIR.glob("*.y*ml")):
        with path.open(encoding="utf-8") as handle:
            documents += [(path.name, doc) for doc in yaml.safe_load_all(handle) if doc is not None]
    return documents


MANIFESTS = load_manifests()


def manifest_id(entry):
    name, doc = entry
    return f"{name}:{doc.get('kind')}"


def documents_of_kind(kind):
    return [doc for _, doc in MANIFESTS if doc["kind"] == kind]


def only_document(kind, name=None):
    (doc,) = [doc for doc in documents_of_kind(kind) if name is None or doc["metadata"]["name"] == name]
    return doc


def kubernetes_strict(schema):
    """A CRD's structural schema as plain JSON Schema that rejects what the API server rejects.

    The server prunes fields that an object schema does not declare (all of them when it
    declares none) unless it sets x-kubernetes-preserve-unknown-fields, and strict field
    validation reports each pruned field as unknown; JSON Schema would accept them silently.
    """
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: kubernetes_strict(sub) for name, sub in schema["properties"].items()}
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = kubernetes_strict(schema["additionalProperties"])
    if "items" in schema:
        schema["items"] = kubernetes_strict(schema["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            schema[key] = [kubernetes_strict(sub) for sub in schema[key]]
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in schema:
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (schema.get("type") == "object" and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    return schema


@functools.lru_cache(maxsize=None)
def crd_validator(api_version, kind):
    crd_path, _ = CUSTOM_RESOURCES[(api_version, kind)]
    crd = yaml.safe_load(crd_path.read_text(encoding="utf-8"))
    assert crd["spec"]["names"]["kind"] == kind
    version = api_version.split("/")[1]
    (served,) = [entry for entry in crd["spec"]["versions"] if entry["name"] == version and entry["served"]]
    schema = kubernetes_strict(served["schema"]["openAPIV3Schema"])
    # The server validates the root metadata as an ObjectMeta whatever the CRD says (checked below).
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def format_path(path):
    return "/".join(str(part) for part in path) or "<root>"


def core_errors(doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{format_path(error.absolute_path)}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [error.message]
    return []


def schema_errors(doc):
    """Every reason the API server would reject `doc` (core and Kubeflow kinds); [] when valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in CUSTOM_RESOURCES:
        return core_errors(doc)
    errors = [f"{format_path(error.absolute_path)}: {error.message}"
              for error in crd_validator(*key).iter_errors(doc)]
    # Root metadata is an ObjectMeta: validate it as the metadata of a minimal core object.
    errors += core_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})})
    # The operator creates Pods from each template, which the cluster validates against its own
    # PodSpec (the CRD embeds the PodSpec of the Kubernetes release the operator was built with).
    _, replicas_key = CUSTOM_RESOURCES[key]
    for name, replica in (doc.get("spec", {}).get(replicas_key) or {}).items():
        if isinstance(replica, dict) and "template" in replica:
            errors += [f"spec/{replicas_key}/{name}/{message}" for message in core_errors(
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"},
                 "template": replica["template"]})]
    return list(dict.fromkeys(errors))  # both checks report some errors


def pod_specs(node, path=()):
    """(path, pod spec) for every pod spec in a document: any mapping that lists containers."""
    if isinstance(node, dict):
        if "containers" in node:
            yield format_path(path), node
        for key, value in node.items():
            yield from pod_specs(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from pod_specs(value, path + (index,))


def argv(container):
    return [str(token) for token in container.get("command", []) + container.get("args", [])]


# Subcommands that take no experiment config.
COMMANDS_WITHOUT_CONFIG = {"serve", "doctor"}


def is_llmrec(token):
    """Whether a command-line token is the `llmrec` executable (not, say, a model path /models/llmrec)."""
    return token == "llmrec" or token.endswith("/bin/llmrec")


def llmrec_invocation(tokens):
    """(config path, --set overrides) of the `llmrec SUBCOMMAND CONFIG ...` in `tokens`, or None."""
    for index, token in enumerate(tokens):
        if is_llmrec(token):
            rest = tokens[index + 1:]
            if rest[0] in COMMANDS_WITHOUT_CONFIG:
                return None
            return rest[1], [rest[i + 1] for i, flag in enumerate(rest[:-1]) if flag == "--set"]
    return None


def invocations(doc):
    found = [llmrec_invocation(argv(container))
             for _, spec in pod_specs(doc) for container in spec["containers"]]
    return [entry for entry in found if entry is not None]


def mounted_volume(spec, container, path):
    """(volume, path relative to its mount) for the mount of `container` that holds `path`."""
    mounts = [mount for mount in container.get("volumeMounts", [])
              if Path(path).is_relative_to(mount["mountPath"])]
    assert mounts, f"{container['name']}: nothing is mounted over {path}"
    mount = max(mounts, key=lambda candidate: len(candidate["mountPath"]))
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    relative = Path(path).relative_to(mount["mountPath"])
    return volumes[mount["name"]], str(Path(mount.get("subPath", "")) / relative)


def configmap_file(spec, container, path):
    """The text the container reads at `path`, from a ConfigMap defined in k8s/."""
    volume, relative = mounted_volume(spec, container, path)
    assert "configMap" in volume, f"{container['name']}: {path} is on volume {volume['name']}, not a ConfigMap"
    source = volume["configMap"]
    keys = {item["path"]: item["key"] for item in source["items"]} if "items" in source else None
    key = keys.get(relative) if keys is not None else relative
    configmaps = {doc["metadata"]["name"]: doc.get("data", {}) for doc in documents_of_kind("ConfigMap")}
    assert source["name"] in configmaps, f"ConfigMap {source['name']} is not defined in k8s/"
    assert key in configmaps[source["name"]], f"ConfigMap {source['name']} has no key {key!r} for {path}"
    return configmaps[source["name"]][key]


def replica_specs(doc):
    _, key = CUSTOM_RESOURCES[(doc["apiVersion"], doc["kind"])]
    return doc["spec"][key]


# ---------------------------------------------------------------------------------- schemas


def test_manifests_hold_the_objects_of_a_deployment():
    kinds = collections.Counter(doc["kind"] for _, doc in MANIFESTS)
    assert kinds == {
        "ConfigMap": 2,  # the experiment; Dataflow's project, region and bucket
        "PersistentVolumeClaim": 1,
        "Job": 5,  # prepare-data; data and features on Flink and on Dataflow
        "MPIJob": 1, "TFJob": 1,
        # Model servers (2), Flink JobManager and TaskManagers, Beam job server.
        "Deployment": 5, "Service": 4, "HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2,
    }


@pytest.mark.parametrize("entry", MANIFESTS, ids=manifest_id)
def test_manifest_passes_strict_schema_validation(entry):
    _, doc = entry
    assert schema_errors(doc) == []


@pytest.mark.parametrize("entry", MANIFESTS, ids=manifest_id)
def test_manifest_leaves_the_namespace_to_kubectl(entry):
    _, doc = entry
    assert "namespace" not in doc["metadata"]


def rename_key(doc, path, new_name):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[new_name] = node.pop(path[-1])


# (kind, name) of the document to misspell: kinds with several documents name one.
MISSPELLINGS = [
    (("MPIJob", None), ("spec", "mpiReplicaSpecs", "Worker", "replicas"), "replics"),
    (("MPIJob", None), ("spec", "slotsPerWorker"), "slotPerWorker"),
    (("MPIJob", None), ("spec", "runPolicy", "cleanPodPolicy"), "cleanPodPolicies"),
    (("TFJob", None), ("spec", "tfReplicaSpecs", "Chief", "replicas"), "replics"),
    (("TFJob", None), ("spec", "tfReplicaSpecs", "Worker", "template", "spec", "containers"), "container"),
    (("TFJob", None), ("spec", "tfReplicaSpecs", "Worker", "template", "spec", "terminationGracePeriodSeconds"),
     "terminationGracePeriod"),
    (("Job", "llmrec-prepare-data"), ("spec", "template", "spec", "containers"), "container"),
    (("PersistentVolumeClaim", None), ("spec", "accessModes"), "accesModes"),
    (("ConfigMap", "llmrec-config"), ("data",), "datas"),
    (("Deployment", "llmrec-serving"), ("spec", "template", "spec", "containers", 0, "readinessProbe"),
     "readinesProbe"),
    (("Deployment", "llmrec-flink-taskmanager"), ("spec", "template", "spec", "containers", 1, "command"),
     "cmd"),
    (("Service", "llmrec-serving"), ("spec", "selector"), "selectors"),
    (("HorizontalPodAutoscaler", "llmrec-serving"), ("spec", "scaleTargetRef"), "scaleTarget"),
    (("PodDisruptionBudget", "llmrec-serving"), ("spec", "minAvailable"), "minAvailible"),
    (("Job", "llmrec-data-dataflow"), ("spec", "template", "spec", "volumes", 2, "secret", "secretName"),
     "secretname"),
]


@pytest.mark.parametrize("document, path, misspelt", MISSPELLINGS,
                         ids=[f"{kind}:{misspelt}" for (kind, _), _, misspelt in MISSPELLINGS])
def test_misspelt_field_fails_validation_naming_it(document, path, misspelt):
    kind, _ = document
    doc = copy.deepcopy(only_document(*document))
    rename_key(doc, path, misspelt)
    errors = schema_errors(doc)
    assert errors, f"{kind} with {misspelt!r} for {path[-1]!r} passed"
    # An unknown field is named as unexpected; a required one may be reported missing instead.
    assert any(f"'{misspelt}'" in error or f"'{path[-1]}'" in error for error in errors), errors


@pytest.mark.parametrize("kind, api_version, wrong_kind", [
    ("ConfigMap", "v1", "ConfigMapp"),
    ("MPIJob", "kubeflow.org/v2beta1", "MPIJobs"),
    ("MPIJob", "kubeflow.org/v1", "MPIJob"),  # v1 MPIJobs are no longer served
    ("HorizontalPodAutoscaler", "autoscaling/v2beta2", "HorizontalPodAutoscaler"),  # removed in 1.26
    ("PodDisruptionBudget", "policy/v1beta1", "PodDisruptionBudget"),  # removed in 1.25
])
def test_unknown_kind_fails_validation_naming_it(kind, api_version, wrong_kind):
    doc = copy.deepcopy(documents_of_kind(kind)[0])
    doc["apiVersion"], doc["kind"] = api_version, wrong_kind
    errors = schema_errors(doc)
    assert any(wrong_kind in error and api_version in error for error in errors), errors


def test_strictness_follows_the_crd_extensions():
    schema = kubernetes_strict({"type": "object", "properties": {
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        "port": {"x-kubernetes-int-or-string": True},
    }})
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid({"open": {"a": 1, "b": 2}, "port": "http"})
    assert validator.is_valid({"port": 8080})
    assert not validator.is_valid({"port": 1.5})
    assert not validator.is_valid({"other": 1})


# ------------------------------------------------------------------------ references between objects


@pytest.mark.parametrize("entry", MANIFESTS, ids=manifest_id)
def test_volume_mounts_name_declared_volumes(entry):
    _, doc = entry
    for where, spec in pod_specs(doc):
        volumes = {volume["name"] for volume in spec.get("volumes", [])}
        for container in spec["containers"]:
            missing = {mount["name"] for mount in container.get("volumeMounts", [])} - volumes
            assert not missing, f"{where}: {container['name']} mounts undeclared volumes {missing}"


@pytest.mark.parametrize("entry", MANIFESTS, ids=manifest_id)
def test_configmaps_and_claims_used_by_pods_are_defined(entry):
    _, doc = entry
    configmaps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in documents_of_kind("ConfigMap")}
    claims = {pvc["metadata"]["name"] for pvc in documents_of_kind("PersistentVolumeClaim")}
    for where, spec in pod_specs(doc):
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, where
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
        for container in spec["containers"]:
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["name"] in configmaps, (where, variable["name"])
                    assert ref["key"] in configmaps[ref["name"]], (where, variable["name"])
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, where


def test_the_claim_is_shared_across_nodes():
    assert only_document("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def llmrec_documents():
    return [entry for entry in MANIFESTS if invocations(entry[1])]


@pytest.mark.parametrize("entry", llmrec_documents(), ids=manifest_id)
def test_every_pod_reads_the_config_from_the_configmap_and_writes_to_the_claim(entry, tmp_path):
    _, doc = entry
    # Under Horovod the launcher names the config and the ranks read it on the workers: every
    # pod of the job must see the same file, and the outputs must outlive the pods.
    (config_path, overrides), = {(path, tuple(overrides)) for path, overrides in invocations(doc)}
    for where, spec in pod_specs(doc):
        for container in spec["containers"]:
            local = tmp_path / Path(config_path).name
            local.write_text(configmap_file(spec, container, config_path), encoding="utf-8")
            output_dir = load_experiment(local, overrides).output_dir
            volume, _ = mounted_volume(spec, container, output_dir)
            assert "persistentVolumeClaim" in volume, f"{where}: {output_dir} is not on the shared claim"


# ---------------------------------------------------------------------------- the operators' rules


def test_horovod_rank_count_matches_the_hostfile_slots():
    mpijob = only_document("MPIJob")
    replicas = replica_specs(mpijob)
    (launcher,) = replicas["Launcher"]["template"]["spec"]["containers"]
    tokens = argv(launcher)
    assert tokens[0] == "horovodrun" and "--gloo" in tokens
    ranks = int(tokens[tokens.index("-np") + 1])
    workers, slots = replicas["Worker"]["replicas"], mpijob["spec"]["slotsPerWorker"]
    assert ranks == workers * slots
    # One rank per GPU, and the hostfile the operator mounts, in the format horovodrun parses.
    worker = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) == slots
    assert tokens[tokens.index("--hostfile") + 1] == "/etc/mpi/hostfile"
    assert mpijob["spec"]["mpiImplementation"] == "OpenMPI"


def test_mpijob_follows_the_mpi_operator_rules():
    mpijob = only_document("MPIJob")
    replicas = replica_specs(mpijob)
    assert set(replicas) == {"Launcher", "Worker"}
    assert replicas["Launcher"]["replicas"] == 1
    for name, replica in replicas.items():
        assert replica["restartPolicy"] in ("Never", "OnFailure"), name
    # Workers run sshd and never exit: None would keep them (and their GPUs) after the job.
    assert mpijob["spec"]["runPolicy"]["cleanPodPolicy"] in ("Running", "All")
    last_worker = f"{mpijob['metadata']['name']}-worker-{replicas['Worker']['replicas'] - 1}"
    assert DNS_1035_LABEL.match(last_worker)
    worker = replicas["Worker"]["template"]["spec"]
    assert argv(worker["containers"][0]) == ["/usr/sbin/sshd", "-De"]
    for where, spec in pod_specs(mpijob):
        assert not {volume["name"] for volume in spec.get("volumes", [])} & MPI_OPERATOR_VOLUMES, where
        mounts = {mount["mountPath"] for container in spec["containers"]
                  for mount in container.get("volumeMounts", [])}
        assert not mounts & MPI_OPERATOR_MOUNTS, where


def test_tfjob_follows_the_training_operator_rules():
    tfjob = only_document("TFJob")
    replicas = replica_specs(tfjob)
    assert set(replicas) <= {"Chief", "Master", "Worker", "PS", "Evaluator"}
    assert sum(replicas.get(role, {}).get("replicas", 0) for role in ("Chief", "Master")) == 1
    assert DNS_1035_LABEL.match(tfjob["metadata"]["name"])
    for name, replica in replicas.items():
        containers = replica["template"]["spec"]["containers"]
        assert any(container["name"] == "tensorflow" for container in containers), name
        assert all(container.get("image") for container in containers), name


@pytest.mark.parametrize("kind", ["MPIJob", "TFJob"])
def test_training_pods_have_time_to_checkpoint_and_declare_resources(kind):
    for where, spec in pod_specs(only_document(kind)):
        assert spec.get("terminationGracePeriodSeconds", 30) >= 120, where
        for container in spec["containers"]:
            resources = container["resources"]
            for name in ("cpu", "memory"):
                assert name in resources["requests"] and name in resources["limits"], (where, name)
            # Extended resources cannot be overcommitted: the API server wants requests == limits.
            for name, limit in resources["limits"].items():
                if "/" in name:
                    assert str(resources["requests"].get(name, limit)) == str(limit), (where, name)


# Our image, as the job that prepares the data names it (README: substituted with the registry).
TRAINER_IMAGE = only_document("Job", "llmrec-prepare-data")["spec"]["template"]["spec"]["containers"][0]["image"]
# Third-party images, by repository; each is pinned to a release (tag checked below).
THIRD_PARTY_IMAGES = {"tensorflow/serving", "flink", "apache/beam_flink1.20_job_server"}


def image_repository_and_tag(image):
    repository, _, tag = image.rpartition(":")
    return (repository, tag) if repository and "/" not in tag else (image, "")


def runs_our_code(container):
    """Whether the container runs this repository's code (llmrec, or Beam workers for its jobs)."""
    return any(is_llmrec(token) or token.startswith("/app/") for token in argv(container))


def test_our_code_runs_the_trainer_image_and_other_images_are_pinned_releases():
    for _, doc in MANIFESTS:
        for where, spec in pod_specs(doc):
            for container in spec["containers"]:
                image = container["image"]
                if runs_our_code(container):
                    assert image == TRAINER_IMAGE, (doc["metadata"]["name"], where, container["name"])
                if image == TRAINER_IMAGE:
                    continue
                repository, tag = image_repository_and_tag(image)
                assert repository in THIRD_PARTY_IMAGES, (doc["metadata"]["name"], image)
                # A release, not a moving tag such as `latest` or `1.20`.
                assert re.match(r"^\d+\.\d+\.\d+", tag), (doc["metadata"]["name"], image)
