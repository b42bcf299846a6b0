"""A model server that speaks TensorFlow Serving's REST API, for our SavedModels.

Why not `tensorflow_model_server`: our index SavedModels use ops that the stock binary does not
carry (ScaNN, tensorflow_text tokenisers). This server loads them in a Python process that
registers those ops, and answers on TF Serving's URLs with TF Serving's JSON, so clients, probes
and load balancers written for TF Serving work unchanged.

Layout (TF Serving's): `model_base_path/<version>/saved_model.pb` (+ `variables/`), one numeric
directory per version. Directories that are not all digits (`.partial-3`, `3.tmp`) and numeric
ones without `saved_model.pb` are not versions yet, because publishers rename a complete
directory into place.

Behaviour:
- Only the newest version is served (TF Serving's "latest" policy). A watcher thread polls the
  base path; a newer version is loaded completely off the request path, then published by
  assigning one attribute. A request takes that reference once, so requests in flight finish on
  the version they started on and none fails during a swap. If the served version's directory
  disappears, the newest remaining one is loaded (a rollback).
- A version that fails to load is logged and skipped until restart (publish the fix as a new
  version); the version being served keeps serving.
- No version at start-up is not an error (TF Serving waits as well): status, metadata and predict
  answer 404 until one appears. A base path that is not a directory is an error at start.
- Errors are `{"error": message}`: 400 bad input (JSON, names, dtypes, shapes, signature, batch
  over `max_batch_size`), 404 unknown model or version, 405 wrong method, 413 body over
  `max_request_bytes`, 500 anything else (logged). The server keeps serving after every error.
- Request bodies are never logged; errors are logged as method, path and status only.
- SIGTERM/SIGINT (via `serve`): stop accepting connections, let received requests finish and
  their responses go out, close keep-alive connections as they fall idle, then exit 0 (1 if
  some connection was still busy after `drain_timeout_s`). A second signal ends it at once.

Stricter than TF Serving: inputs not in the signature are rejected (TF Serving ignores them in
the columnar format), and input shapes are checked against the signature before running it.
Not implemented: gRPC, `:classify`/`:regress`, `/labels/`, batching across requests.
"""

import argparse
import base64
import binascii
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import waitress  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2  # noqa: E402
from waitress import wasyncore  # noqa: E402
from waitress.channel import HTTPChannel  # noqa: E402
from waitress.server import BaseWSGIServer  # noqa: E402
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge  # noqa: E402
from werkzeug.routing import BaseConverter, Map, Rule  # noqa: E402
from werkzeug.wrappers import Request, Response  # noqa: E402

from tfrs_llmrec.serving.server_options import (DEFAULT_DRAIN_TIMEOUT_S, DEFAULT_MAX_BATCH_SIZE,  # noqa: E402
                                                DEFAULT_MAX_REQUEST_BYTES, DEFAULT_POLL_INTERVAL_S,
                                                DEFAULT_PORT, DEFAULT_THREADS, add_server_arguments)

LOGGER = logging.getLogger("tfrs_llmrec.serving.server")

DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY

# Bodies up to this many times max_request_bytes are read and answered with a JSON 413; larger
# ones waitress refuses from the Content-Length alone, before reading (plain-text 413), so that
# no client can make the server buffer an arbitrary amount.
_HARD_BODY_LIMIT_FACTOR = 2
# How long one pass of waitress's event loop may wait; bounds how fast stop() takes effect.
_LOOP_TIMEOUT_S = 0.1
_VERSION_DIR = re.compile(r"[0-9]+")


class ApiError(Exception):
    """A request answered with this HTTP status and `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# Versions on disk and loaded versions


def complete_versions(base_path) -> dict:
    """{version: directory} of the complete versions under base_path (none if it is missing)."""
    try:
        entries = list(os.scandir(base_path))
    except FileNotFoundError:
        return {}
    return {int(entry.name): Path(entry.path) for entry in entries
            if _VERSION_DIR.fullmatch(entry.name) and entry.is_dir()
            and os.path.isfile(os.path.join(entry.path, "saved_model.pb"))}


def register_custom_ops() -> None:
    """Imports the libraries whose ops our SavedModels use; see reload.py."""
    # A ScaNN index SavedModel cannot load without ScaNN's custom ops registered.
    from scann.scann_ops.py import scann_ops  # noqa: F401
    # Intention-aware serving models tokenise in-graph.
    import tensorflow_text  # noqa: F401


def _proto_to_json(message) -> dict:
    """Proto JSON as TF Serving writes it: field names as in the .proto, default values included."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _signature_def_map(saved_model_dir: Path) -> get_model_metadata_pb2.SignatureDefMap:
    """The serving MetaGraphDef's signature_def map, read from saved_model.pb as TF Serving does."""
    saved_model = saved_model_pb2.SavedModel.FromString((saved_model_dir / "saved_model.pb").read_bytes())
    meta_graph = next((graph for graph in saved_model.meta_graphs
                       if tf.saved_model.SERVING in graph.meta_info_def.tags), saved_model.meta_graphs[0])
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in meta_graph.signature_def.items():
        signature_defs.signature_def[key].CopyFrom(signature_def)
    return signature_defs


@dataclass(frozen=True)
class Signature:
    """One callable signature: its inputs' specs and its outputs' names, both sorted by name."""

    function: object
    inputs: dict
    outputs: tuple

    def __call__(self, arrays: dict) -> dict:
        tensors = {name: tf.constant(arrays[name], dtype=spec.dtype) for name, spec in self.inputs.items()}
        results = self.function(**tensors)
        # Strings as object arrays of bytes, scalars included (`.numpy()` gives a scalar as bytes).
        return {name: np.asarray(results[name].numpy(), dtype=object if results[name].dtype == tf.string else None)
                for name in self.outputs}


@dataclass(frozen=True)
class Servable:
    """One loaded version. `saved_model` keeps the loaded object (its variables) alive for as
    long as any request still holds this servable, even after a newer version replaced it."""

    name: str
    version: int
    signatures: dict
    status_json: dict
    metadata_json: dict
    saved_model: object


def load_servable(name: str, version: int, saved_model_dir: Path) -> Servable:
    """Loads one version and prepares everything a request needs, so that none of it happens
    on the request path or while the version is half-published."""
    register_custom_ops()
    saved_model = tf.saved_model.load(str(saved_model_dir))
    signatures = {}
    for key, function in saved_model.signatures.items():
        _, inputs = function.structured_input_signature
        signatures[key] = Signature(function, dict(sorted(inputs.items())), tuple(sorted(function.structured_outputs)))

    status = get_model_status_pb2.GetModelStatusResponse()
    version_status = status.model_version_status.add(version=version,
                                                     state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    version_status.status.SetInParent()  # error_code OK, written out like TF Serving does
    metadata = get_model_metadata_pb2.GetModelMetadataResponse()
    metadata.model_spec.name = name
    metadata.model_spec.version.value = version
    metadata.metadata["signature_def"].Pack(_signature_def_map(saved_model_dir))
    return Servable(name, version, signatures, _proto_to_json(status), _proto_to_json(metadata), saved_model)


class VersionWatcher:
    """Keeps `current` on the newest loadable version under base_path."""

    def __init__(self, name: str, base_path: Path, poll_interval_s: float):
        self.name = name
        self.base_path = base_path
        self.poll_interval_s = poll_interval_s
        self.current = None  # replaced by one assignment, so readers never see a half-loaded version
        self._failed = set()
        self._versions_seen = None
        self._stop = threading.Event()
        self._thread = None

    def poll(self) -> None:
        """Serves the newest complete version that has not failed to load, loading it if needed."""
        versions = complete_versions(self.base_path)
        if set(versions) != self._versions_seen:
            self._versions_seen = set(versions)
            LOGGER.info("model %s: versions on disk %s", self.name, sorted(versions) or "none")
        current = self.current
        for version in sorted(set(versions) - self._failed, reverse=True):
            if current is not None and version == current.version:
                return
            try:
                servable = load_servable(self.name, version, versions[version])
            except Exception:  # any broken SavedModel must leave the served version in place
                LOGGER.exception("model %s: version %d failed to load; skipping it", self.name, version)
                self._failed.add(version)
                continue
            self.current = servable
            LOGGER.info("model %s: serving version %d (was %s)", self.name, version,
                        current.version if current is not None else "none")
            return

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"version-watcher-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.poll()
            except Exception:  # a transient file-system error must not end the watching
                LOGGER.exception("model %s: polling %s failed", self.name, self.base_path)


# ---------------------------------------------------------------------------------------------
# JSON <-> arrays, following TF Serving's json_tensor.cc


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _json_snippet(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dense_shape(value) -> list:
    """The shape TF Serving reads off nested lists: the length at each level, along first items."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _flatten(value, shape: list, level: int, out: list, name: str) -> None:
    """Appends the leaves of `value` to `out`, failing unless it is dense with `shape`."""
    if not isinstance(value, list) or len(value) != shape[level]:
        raise ApiError(400, f"input '{name}' is not a dense tensor: expected a list of {shape[level]} "
                            f"at level {level}, got {_json_snippet(value)}")
    if level == len(shape) - 1:
        if any(isinstance(item, list) for item in value):
            raise ApiError(400, f"input '{name}' is not a dense tensor: lists nested deeper than the "
                                f"shape {shape} read from its first elements")
        out.extend(value)
        return
    for item in value:
        _flatten(item, shape, level + 1, out, name)


def _type_error(name: str, value, dtype: tf.DType) -> ApiError:
    return ApiError(400, f"input '{name}': JSON value {_json_snippet(value)} is not of expected type "
                         f"{dtype.name}")


def _to_bytes(value, name: str) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate escape such as "\ud800"
            raise ApiError(400, f"input '{name}': string is not valid Unicode: {error}") from None
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise ApiError(400, f"input '{name}': unable to base64-decode {_json_snippet(value)}") from None
    raise _type_error(name, value, tf.string)


def _leaves_to_array(leaves: list, dtype: tf.DType, name: str) -> np.ndarray:
    """Converts JSON leaves to `dtype`, rejecting what TF Serving rejects (no coercion)."""
    if dtype == tf.string:
        return np.array([_to_bytes(value, name) for value in leaves], dtype=object)
    if dtype == tf.bool:
        accepted = (bool,)
    elif dtype.is_integer:
        accepted = (int,)  # a JSON 1.0 or true is not an integer
    elif dtype.is_floating:
        accepted = (int, float)
    else:
        raise ApiError(400, f"input '{name}': dtype {dtype.name} cannot be written in JSON")
    for value in leaves:
        if type(value) not in accepted:
            raise _type_error(name, value, dtype)
    if dtype.is_integer and leaves and (min(leaves) < dtype.min or max(leaves) > dtype.max):
        raise ApiError(400, f"input '{name}': value out of range for {dtype.name}")
    if dtype.is_floating:
        try:
            wide = np.array(leaves, dtype=np.float64)
        except OverflowError:
            raise ApiError(400, f"input '{name}': integer too large for {dtype.name}") from None
        finite = wide[np.isfinite(wide)]
        if finite.size and np.abs(finite).max() > np.finfo(dtype.as_numpy_dtype).max:
            raise ApiError(400, f"input '{name}': value out of range for {dtype.name}")
        return wide.astype(dtype.as_numpy_dtype)
    return np.array(leaves, dtype=dtype.as_numpy_dtype)


def _shape_text(shape) -> str:
    return "[" + ", ".join("-1" if size is None else str(size) for size in shape) + "]"


def json_to_array(value, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """A JSON value (nested lists, or a scalar) as an array of the signature input's dtype and shape."""
    shape = _dense_shape(value)
    expected = spec.shape
    if expected.rank is not None and (
            len(shape) != expected.rank
            or any(want is not None and want != got for want, got in zip(expected.as_list(), shape))):
        raise ApiError(400, f"input '{name}' has shape {_shape_text(shape)} but the signature expects "
                            f"{_shape_text(expected.as_list())}")
    leaves = []
    if shape:
        _flatten(value, shape, 0, leaves, name)
    else:
        leaves.append(value)
    return _leaves_to_array(leaves, spec.dtype, name).reshape(shape)


def _check_names(given, signature: Signature, where: str) -> None:
    missing = sorted(set(signature.inputs) - set(given))
    unknown = sorted(set(given) - set(signature.inputs))
    if missing:
        raise ApiError(400, f"{where}: missing input(s) {missing}; the signature's inputs are "
                            f"{list(signature.inputs)}")
    if unknown:
        raise ApiError(400, f"{where}: unknown input(s) {unknown}; the signature's inputs are "
                            f"{list(signature.inputs)}")


def _check_batch(rows: int, max_batch_size: int) -> None:
    if rows > max_batch_size:
        raise ApiError(400, f"batch of {rows} rows exceeds the server's max_batch_size of {max_batch_size}")


def instances_to_arrays(instances, signature: Signature, max_batch_size: int) -> dict:
    """Row format: a list with one object (keyed by input name) or, with one input, one value per row."""
    if not isinstance(instances, list) or not instances:
        raise ApiError(400, "'instances' must be a non-empty list")
    _check_batch(len(instances), max_batch_size)
    objects = [_is_named_object(instance) for instance in instances]
    if all(objects):
        for row, instance in enumerate(instances):
            _check_names(instance, signature, f"instance {row}")
        columns = {name: [instance[name] for instance in instances] for name in signature.inputs}
    elif any(objects):
        raise ApiError(400, "'instances' mixes objects and plain values")
    elif len(signature.inputs) == 1:
        columns = {next(iter(signature.inputs)): instances}
    else:
        raise ApiError(400, f"'instances' is a plain list, but the signature has several inputs "
                            f"{list(signature.inputs)}: send a list of objects keyed by input name")
    return {name: json_to_array(columns[name], spec, name) for name, spec in signature.inputs.items()}


def inputs_to_arrays(inputs, signature: Signature, max_batch_size: int) -> dict:
    """Columnar format: an object keyed by input name or, with one input, the bare value."""
    if _is_named_object(inputs):
        _check_names(inputs, signature, "'inputs'")
        columns = inputs
    elif len(signature.inputs) == 1:
        columns = {next(iter(signature.inputs)): inputs}
    else:
        raise ApiError(400, f"'inputs' is a plain value, but the signature has several inputs "
                            f"{list(signature.inputs)}: send an object keyed by input name")
    for value in columns.values():
        if isinstance(value, list):
            _check_batch(len(value), max_batch_size)
    return {name: json_to_array(columns[name], spec, name) for name, spec in signature.inputs.items()}


def _bytes_to_json(value: bytes, as_b64: bool):
    if not as_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass  # JSON strings cannot carry it; TF Serving's binary form can
    return {"b64": base64.b64encode(value).decode("ascii")}


def array_to_json(name: str, array: np.ndarray):
    """Nested lists as TF Serving writes them: outputs named `*_bytes` as base64, float32 at float32
    precision (0.1, not 0.10000000149011612), NaN and infinities as bare tokens."""
    if array.dtype == object:
        as_b64 = name.endswith("_bytes")
        values = [_bytes_to_json(value, as_b64) for value in array.ravel()]
        flat = np.empty(len(values), dtype=object)
        flat[:] = values
        return flat.reshape(array.shape).tolist()
    if array.dtype in (np.float16, np.float32):
        # The shortest decimal that reads back as the same float32, carried by the float64 it names.
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def outputs_to_predictions(outputs: dict):
    """Row format response: per row, the value (one output) or an object of outputs."""
    batch_sizes = set()
    for name, array in outputs.items():
        if array.ndim == 0:
            raise ApiError(400, f"output '{name}' has no batch dimension; use the columnar 'inputs' format")
        batch_sizes.add(array.shape[0])
    if len(batch_sizes) > 1:
        raise ApiError(400, f"outputs have inconsistent batch sizes {sorted(batch_sizes)}; "
                            "use the columnar 'inputs' format")
    rows = {name: array_to_json(name, array) for name, array in outputs.items()}
    if len(rows) == 1:
        return next(iter(rows.values()))
    return [{name: values[row] for name, values in rows.items()} for row in range(batch_sizes.pop())]


def outputs_to_columns(outputs: dict):
    """Columnar response: the value (one output) or an object of outputs."""
    columns = {name: array_to_json(name, array) for name, array in outputs.items()}
    return next(iter(columns.values())) if len(columns) == 1 else columns


# ---------------------------------------------------------------------------------------------
# The WSGI application


class _ModelNameConverter(BaseConverter):
    """A model name stops at ':' so that `/v1/models/m:predict` routes to predict."""

    regex = r"[^/:]+"


class RestApi:
    """TF Serving's REST endpoints for one model, as a WSGI application."""

    def __init__(self, model_name: str, watcher: VersionWatcher, max_batch_size: int, max_request_bytes: int):
        self.model_name = model_name
        self.watcher = watcher
        self.max_batch_size = max_batch_size
        self.max_request_bytes = max_request_bytes
        prefixes = ("/v1/models/<model:name>", "/v1/models/<model:name>/versions/<int:version>")
        self.urls = Map([rule for prefix in prefixes for rule in (
            Rule(prefix, endpoint="status", methods=["GET"]),
            Rule(prefix + "/metadata", endpoint="metadata", methods=["GET"]),
            Rule(prefix + ":predict", endpoint="predict", methods=["POST"]),
        )], converters={"model": _ModelNameConverter}, strict_slashes=False)

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = self.max_request_bytes
        headers = {}
        try:
            endpoint, arguments = self.urls.bind_to_environ(environ).match()
            status, body = 200, getattr(self, endpoint)(request, **arguments)
        except ApiError as error:
            status, body = error.status, {"error": str(error)}
        except MethodNotAllowed as error:
            status, body = error.code, {"error": f"method {request.method} not allowed on {request.path}"}
            headers["Allow"] = ", ".join(error.valid_methods)
        except HTTPException as error:
            status, body = error.code, {"error": error.description}
        except Exception:
            LOGGER.exception("%s %s failed", request.method, request.path)
            status, body = 500, {"error": "internal server error"}
        if status >= 400:
            LOGGER.info("%s %s -> %d", request.method, request.path, status)
        response = Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")
        return response(environ, start_response)

    def _servable(self, name: str, version) -> Servable:
        servable = self.watcher.current
        if name != self.model_name or servable is None or (version is not None and version != servable.version):
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise ApiError(404, f"Servable not found for request: {request}")
        return servable

    def status(self, request, name: str, version=None) -> dict:
        servable = self.watcher.current
        if name != self.model_name or servable is None:
            raise ApiError(404, f"Could not find any versions of model {name}")
        if version is not None and version != servable.version:
            raise ApiError(404, f"Could not find version {version} of model {name}")
        return servable.status_json

    def metadata(self, request, name: str, version=None) -> dict:
        return self._servable(name, version).metadata_json

    def predict(self, request, name: str, version=None) -> dict:
        servable = self._servable(name, version)
        payload = self._json_body(request)
        signature_name = payload.get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(signature_name, str):
            raise ApiError(400, "'signature_name' must be a string")
        signature = servable.signatures.get(signature_name or DEFAULT_SIGNATURE)
        if signature is None:
            raise ApiError(400, f"Serving signature name: \"{signature_name}\" not found in signature def; "
                                f"this version has {sorted(servable.signatures)}")
        if ("instances" in payload) == ("inputs" in payload):
            raise ApiError(400, "the request must have exactly one of 'instances' (row format) or "
                                "'inputs' (columnar format)")
        rows = "instances" in payload
        if rows:
            arrays = instances_to_arrays(payload["instances"], signature, self.max_batch_size)
        else:
            arrays = inputs_to_arrays(payload["inputs"], signature, self.max_batch_size)
        try:
            outputs = signature(arrays)
        except tf.errors.InvalidArgumentError as error:
            raise ApiError(400, error.message) from None
        if rows:
            return {"predictions": outputs_to_predictions(outputs)}
        return {"outputs": outputs_to_columns(outputs)}

    def _json_body(self, request) -> dict:
        try:
            data = request.get_data(cache=False)
        except RequestEntityTooLarge:
            raise ApiError(413, f"request body exceeds the server's max_request_bytes of "
                                f"{self.max_request_bytes}") from None
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            raise ApiError(400, f"JSON Parse error: {error}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return payload


# ---------------------------------------------------------------------------------------------
# The server


class ModelServer:
    """The REST server in this process: `start()` loads the newest version and listens on
    `port` (0 picks a free one); `stop()` drains and closes."""

    def __init__(self, model_base_path, port: int = DEFAULT_PORT, host: str = "0.0.0.0", model_name=None,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S, threads: int = DEFAULT_THREADS):
        self.base_path = Path(model_base_path)
        if not self.base_path.is_dir():
            raise FileNotFoundError(f"model_base_path {self.base_path} is not a directory")
        self.model_name = model_name or os.path.basename(os.path.abspath(self.base_path))
        if not re.fullmatch(_ModelNameConverter.regex, self.model_name):
            raise ValueError(f"model name {self.model_name!r} cannot contain '/' or ':'")
        self.host = host
        self.port = port
        self.threads = threads
        self.max_request_bytes = max_request_bytes
        self.watcher = VersionWatcher(self.model_name, self.base_path, poll_interval_s)
        self.app = RestApi(self.model_name, self.watcher, max_batch_size, max_request_bytes)
        self._map = {}
        self._server = None
        self._listeners = []
        self._loop_thread = None
        self._draining = threading.Event()
        self._listeners_closed = threading.Event()
        self._closed = threading.Event()

    def start(self) -> "ModelServer":
        self._server = waitress.create_server(  # binds first: a port in use fails before any model loads
            self.app, map=self._map, host=self.host, port=self.port, threads=self.threads,
            max_request_body_size=_HARD_BODY_LIMIT_FACTOR * self.max_request_bytes)
        self._listeners = [entry for entry in self._map.values() if isinstance(entry, BaseWSGIServer)]
        self.port = int(self._listeners[0].effective_port)  # waitress reports it as a string
        self.watcher.poll()  # connections wait in the backlog until the newest version is loaded
        if self.watcher.current is None:
            LOGGER.warning("model %s: no loadable version under %s yet; answering 404 until one appears",
                           self.model_name, self.base_path)
        self.watcher.start()
        self._loop_thread = threading.Thread(target=self._loop, name="model-server-loop", daemon=True)
        self._loop_thread.start()
        LOGGER.info("model %s: listening on %s:%d", self.model_name, self.host, self.port)
        return self

    def stop(self, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S) -> bool:
        """Stops accepting connections and closes each open one once it has answered everything
        it received; after drain_timeout_s closes the rest. Returns whether all drained in time."""
        self._draining.set()
        self._listeners_closed.wait()
        deadline = time.monotonic() + drain_timeout_s
        while (busy := self._connections()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if busy:
            LOGGER.warning("model %s: %d connection(s) still busy after %.0f s; closing them",
                           self.model_name, len(busy), drain_timeout_s)
        self._closed.set()
        self._loop_thread.join()
        self.watcher.stop()
        LOGGER.info("model %s: stopped", self.model_name)
        return not busy

    def _connections(self) -> list:
        return [entry for entry in list(self._map.values()) if isinstance(entry, HTTPChannel)]

    def _loop(self) -> None:
        """Waitress's event loop, one pass at a time, so that sockets are closed on this thread,
        the one asyncore expects to close them."""
        while not self._closed.is_set():
            if self._draining.is_set():
                if not self._listeners_closed.is_set():
                    for listener in self._listeners:
                        wasyncore.dispatcher.close(listener)  # the listening socket only
                    self._listeners_closed.set()
                # A keep-alive connection is closed as soon as it has nothing half-received, left
                # to answer or left to send, so that a busy client moves to another replica
                # instead of keeping this one from ever draining.
                for channel in self._connections():
                    if channel.request is None and not channel.requests and not channel.total_outbufs_len:
                        channel.will_close = True
            wasyncore.loop(timeout=_LOOP_TIMEOUT_S, map=self._map, use_poll=True, count=1)
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)


def serve(model_base_path, port: int = DEFAULT_PORT, host: str = "0.0.0.0", model_name=None,
          max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
          poll_interval_s: float = DEFAULT_POLL_INTERVAL_S, threads: int = DEFAULT_THREADS,
          drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S) -> int:
    """Serves until SIGTERM or SIGINT, then drains; 0 when every request in flight was answered.
    Must run on the main thread (signal handlers). The previous handlers are back while it drains,
    so a second signal ends the process at once."""
    stop = threading.Event()
    handlers = {number: signal.signal(number, lambda *_: stop.set()) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = ModelServer(model_base_path, port=port, host=host, model_name=model_name,
                             max_batch_size=max_batch_size, max_request_bytes=max_request_bytes,
                             poll_interval_s=poll_interval_s, threads=threads).start()
        stop.wait()
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    LOGGER.info("model %s: shutting down", server.model_name)
    return 0 if server.stop(drain_timeout_s) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfrs_llmrec.serving.server",
                                     description="Serve SavedModel versions over TF Serving's REST API.")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return serve(**vars(args))
    except (OSError, ValueError) as error:  # a missing base path, a port in use, a bad model name
        LOGGER.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
