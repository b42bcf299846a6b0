"""The TF-Serving-compatible model server: JSON formats, errors, version routing, hot swap, SIGTERM."""

import base64
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import portpicker
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tfrs_llmrec.serving.server import ModelServer, main

MODEL = "recs"
MAX_BATCH_SIZE = 8
MAX_REQUEST_BYTES = 64 * 1024
POLL_INTERVAL_S = 0.2
# Valid rows for serving_default; each test that breaks a request checks that this one still works.
GOOD_ROWS = [{"history": [1, 2, 3], "user_id": "alice"}, {"history": [4, 5, 6], "user_id": "bob"}]


class Recommender(tf.Module):
    """A tiny model whose outputs tell which version answered."""

    def __init__(self, version: int):
        super().__init__()
        self.version = version
        self.offset = tf.Variable(100.0 * version)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int64, name="history"),
                                  tf.TensorSpec([None], tf.string, name="user_id")])
    def serve(self, history, user_id):
        total = tf.cast(tf.reduce_sum(history, axis=1), tf.float32)
        scores = tf.stack([total + self.offset, total / 10.0], axis=1)
        item_ids = tf.stack([tf.strings.join([f"v{self.version}-", user_id]), tf.strings.join([user_id, "-top"])],
                            axis=1)
        return {"scores": scores, "item_ids": item_ids}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def double(self, x):
        return {"y": 2.0 * x + float(self.version)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.bool, name="flag"),
                                  tf.TensorSpec([None], tf.int32, name="count"),
                                  tf.TensorSpec([None], tf.float64, name="weight"),
                                  tf.TensorSpec([None], tf.string, name="blob")])
    def types(self, flag, count, weight, blob):
        return {"negated": tf.logical_not(flag), "count_plus_one": count + 1, "weight_half": weight / 2.0,
                "blob": blob, "blob_bytes": blob,
                "total_count": tf.reduce_sum(count), "joined": tf.strings.reduce_join(blob, separator="|")}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float64, name="seconds")])
    def sleep(self, seconds):
        """Busy-waits for max(seconds): a request that is deterministically still running."""
        deadline = tf.timestamp() + tf.reduce_max(seconds)
        spins = tf.while_loop(lambda count: tf.timestamp() < deadline, lambda count: count + 1,
                              [tf.constant(0, tf.int64)])[0]
        return {"seconds": seconds + tf.cast(spins * 0, tf.float64)}


def save_version(version: int, path):
    model = Recommender(version)
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve, "double": model.double,
                                                      "types": model.types, "sleep": model.sleep})
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Versions 1 and 2, saved once; tests copy them into their own base paths."""
    root = tmp_path_factory.mktemp("store")
    return {version: save_version(version, root / str(version)) for version in (1, 2)}


def base_path_with(tmp_path, store, *versions):
    base = tmp_path / MODEL
    base.mkdir()
    for version in versions:
        shutil.copytree(store[version], base / str(version))
    return base


def publish(saved_model_dir, base, version, break_it=False):
    """Publishes like the exporter: a complete copy renamed into place (broken first if asked)."""
    partial = base / f".partial-{version}"
    shutil.copytree(saved_model_dir, partial)
    if break_it:
        (partial / "saved_model.pb").write_bytes(b"not a SavedModel")
    os.rename(partial, base / str(version))


def start_server(base, **options):
    options = {"host": "127.0.0.1", "port": 0, "max_batch_size": MAX_BATCH_SIZE,
               "max_request_bytes": MAX_REQUEST_BYTES, "poll_interval_s": POLL_INTERVAL_S, "threads": 4, **options}
    return ModelServer(base, **options).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory, store):
    """Serves version 1 under the model name `recs`."""
    server = start_server(base_path_with(tmp_path_factory.mktemp("served"), store, 1))
    yield server
    assert server.stop(drain_timeout_s=10)


def call(port, path, body=None, method=None):
    """(status, parsed JSON body); `body` is JSON-encoded unless it is bytes."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def direct(saved_model_dir, signature, **inputs):
    """The signature called in this process, outputs as numpy."""
    function = tf.saved_model.load(str(saved_model_dir)).signatures[signature]
    return {name: tensor.numpy() for name, tensor in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def expected_rows(saved_model_dir, rows):
    outputs = direct(saved_model_dir, "serving_default", history=np.array([row["history"] for row in rows], np.int64),
                     user_id=np.array([row["user_id"] for row in rows], object))
    return outputs["scores"], outputs["item_ids"].astype(str)


def assert_good_predict(port, saved_model_dir):
    status, body = call(port, f"/v1/models/{MODEL}:predict", {"instances": GOOD_ROWS})
    assert status == 200, body
    scores, item_ids = expected_rows(saved_model_dir, GOOD_ROWS)
    np.testing.assert_allclose([row["scores"] for row in body["predictions"]], scores, rtol=1e-6)
    assert [row["item_ids"] for row in body["predictions"]] == item_ids.tolist()


# ---------------------------------------------------------------------------------------------
# Status and metadata


def test_status_reports_the_served_version(server):
    expected = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert call(server.port, f"/v1/models/{MODEL}") == (200, expected)
    assert call(server.port, f"/v1/models/{MODEL}/versions/1") == (200, expected)
    status, body = call(server.port, f"/v1/models/{MODEL}/versions/2")
    assert (status, body) == (404, {"error": f"Could not find version 2 of model {MODEL}"})
    status, body = call(server.port, "/v1/models/other")
    assert (status, body) == (404, {"error": "Could not find any versions of model other"})


def test_metadata_describes_every_signature_of_the_saved_model(server, store):
    status, body = call(server.port, f"/v1/models/{MODEL}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    assert body["metadata"]["signature_def"]["@type"] == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signature_defs = body["metadata"]["signature_def"]["signature_def"]
    loaded = tf.saved_model.load(str(store[1]))
    assert set(loaded.signatures) <= set(signature_defs)
    for name, function in loaded.signatures.items():
        signature_def = signature_defs[name]
        assert signature_def["method_name"] == "tensorflow/serving/predict"
        _, input_specs = function.structured_input_signature
        for side, specs in (("inputs", input_specs), ("outputs", function.structured_outputs)):
            assert set(signature_def[side]) == set(specs), (name, side)
            for tensor_name, spec in specs.items():
                info = signature_def[side][tensor_name]
                assert info["dtype"] == types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
                assert [int(dim["size"]) for dim in info["tensor_shape"]["dim"]] == [
                    -1 if size is None else size for size in spec.shape.as_list()]
    assert call(server.port, f"/v1/models/{MODEL}/versions/1/metadata") == (200, body)
    assert call(server.port, f"/v1/models/{MODEL}/versions/2/metadata") == (
        404, {"error": f"Servable not found for request: Specific({MODEL}, 2)"})


# ---------------------------------------------------------------------------------------------
# Predict formats


def test_row_format_matches_a_direct_call(server, store):
    status, body = call(server.port, f"/v1/models/{MODEL}:predict",
                        {"signature_name": "serving_default", "instances": GOOD_ROWS})
    assert status == 200
    scores, item_ids = expected_rows(store[1], GOOD_ROWS)
    assert [sorted(row) for row in body["predictions"]] == [["item_ids", "scores"]] * 2
    np.testing.assert_allclose([row["scores"] for row in body["predictions"]], scores, rtol=1e-6)
    assert [row["item_ids"] for row in body["predictions"]] == item_ids.tolist()
    assert item_ids[0, 0] == "v1-alice"


def test_columnar_format_matches_a_direct_call(server, store):
    inputs = {"history": [row["history"] for row in GOOD_ROWS], "user_id": [row["user_id"] for row in GOOD_ROWS]}
    status, body = call(server.port, f"/v1/models/{MODEL}/versions/1:predict", {"inputs": inputs})
    assert status == 200
    scores, item_ids = expected_rows(store[1], GOOD_ROWS)
    assert sorted(body["outputs"]) == ["item_ids", "scores"]
    np.testing.assert_allclose(body["outputs"]["scores"], scores, rtol=1e-6)
    assert body["outputs"]["item_ids"] == item_ids.tolist()


def test_one_input_and_one_output_use_bare_values(server, store):
    x = [0.05, 1.5, -3.0]
    y = direct(store[1], "double", x=np.array(x, np.float32))["y"]
    # float32 outputs are written at float32 precision, as TF Serving does (0.1, not 0.10000000149011612).
    expected = [float(str(value)) for value in y]
    for request in ({"instances": x}, {"instances": [{"x": value} for value in x]}):
        assert call(server.port, f"/v1/models/{MODEL}:predict", {"signature_name": "double", **request}) == (
            200, {"predictions": expected})
    for inputs in (x, {"x": x}):
        assert call(server.port, f"/v1/models/{MODEL}:predict", {"signature_name": "double", "inputs": inputs}) == (
            200, {"outputs": expected})


def test_dtypes_and_binary_strings(server):
    blobs = [b"plain text", b"\xff\xfe not utf-8"]
    request = {"signature_name": "types", "inputs": {
        "flag": [True, False], "count": [7, -2], "weight": [3.0, 0.5],
        "blob": ["plain text", {"b64": base64.b64encode(blobs[1]).decode()}]}}
    status, body = call(server.port, f"/v1/models/{MODEL}:predict", request)
    assert status == 200, body
    assert body["outputs"] == {
        "negated": [False, True], "count_plus_one": [8, -1], "weight_half": [1.5, 0.25],
        # A string output is text when it is valid UTF-8 and base64 otherwise; `*_bytes` always base64.
        "blob": ["plain text", {"b64": base64.b64encode(blobs[1]).decode()}],
        "blob_bytes": [{"b64": base64.b64encode(blob).decode()} for blob in blobs],
        # Scalars (no batch dimension) are bare values; the columnar format can carry them.
        "total_count": 5, "joined": {"b64": base64.b64encode(b"|".join(blobs)).decode()}}


# ---------------------------------------------------------------------------------------------
# Errors: each answers its status with {"error": ...}; the next good request still succeeds.

ROW, ROW2 = GOOD_ROWS
BAD_REQUESTS = {
    "malformed JSON": (b'{"instances": [', 400, "JSON Parse error"),
    "not an object": ([ROW], 400, "JSON object"),
    "both formats": ({"instances": [ROW], "inputs": {}}, 400, "exactly one of"),
    "neither format": ({"signature_name": "serving_default"}, 400, "exactly one of"),
    "missing input (rows)": ({"instances": [{"history": [1, 2, 3]}]}, 400, "missing input(s) ['user_id']"),
    "missing input (columns)": ({"inputs": {"history": [[1, 2, 3]]}}, 400, "missing input(s) ['user_id']"),
    "unknown input": ({"instances": [{**ROW, "age": 3}]}, 400, "unknown input(s) ['age']"),
    "string for int64": ({"instances": [{**ROW, "history": ["1", "2", "3"]}]}, 400, "expected type int64"),
    "float for int64": ({"instances": [{**ROW, "history": [1.5, 2, 3]}]}, 400, "expected type int64"),
    "bool for int64": ({"instances": [{**ROW, "history": [True, 2, 3]}]}, 400, "expected type int64"),
    "number for string": ({"instances": [{**ROW, "user_id": 7}]}, 400, "expected type string"),
    "null value": ({"instances": [{**ROW, "user_id": None}]}, 400, "expected type string"),
    "wrong inner size": ({"instances": [{**ROW, "history": [1, 2]}]}, 400, "the signature expects [-1, 3]"),
    "wrong rank": ({"inputs": {"history": [1, 2, 3], "user_id": ["a"]}}, 400, "the signature expects [-1, 3]"),
    "ragged rows": ({"instances": [ROW, {**ROW2, "history": [[4], 5, 6]}]}, 400, "not a dense tensor"),
    "ragged columns": ({"inputs": {"history": [[1, 2, 3], [4, 5]], "user_id": ["a", "b"]}}, 400,
                       "not a dense tensor"),
    "plain list for several inputs": ({"instances": [[1, 2, 3]]}, 400, "list of objects keyed by input name"),
    "empty instances": ({"instances": []}, 400, "non-empty list"),
    "unknown signature": ({"signature_name": "nope", "instances": [ROW]}, 400,
                          'Serving signature name: "nope" not found'),
    "signature_name not a string": ({"signature_name": 3, "instances": [ROW]}, 400, "must be a string"),
    "bad base64": ({"instances": [{**ROW, "user_id": {"b64": "not base64!"}}]}, 400, "base64"),
    "int32 out of range": ({"signature_name": "types", "instances": [
        {"flag": True, "count": 2 ** 40, "weight": 1.0, "blob": "x"}]}, 400, "out of range for int32"),
    "scalar output in row format": ({"signature_name": "types", "instances": [
        {"flag": True, "count": 1, "weight": 1.0, "blob": "x"}]}, 400, "has no batch dimension"),
    "rows over max_batch_size": ({"instances": [ROW] * (MAX_BATCH_SIZE + 1)}, 400, "max_batch_size of 8"),
    "columns over max_batch_size": ({"inputs": {"history": [[1, 2, 3]] * (MAX_BATCH_SIZE + 1),
                                                "user_id": ["a"] * (MAX_BATCH_SIZE + 1)}}, 400, "max_batch_size of 8"),
    "body over max_request_bytes": ({"instances": [ROW], "padding": "x" * MAX_REQUEST_BYTES}, 413,
                                    "max_request_bytes of 65536"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_predict_request_is_a_json_error_and_the_server_keeps_serving(server, store, case):
    body, expected_status, message = BAD_REQUESTS[case]
    status, answer = call(server.port, f"/v1/models/{MODEL}:predict", body)
    assert status == expected_status, answer
    assert list(answer) == ["error"] and message in answer["error"], answer
    assert_good_predict(server.port, store[1])


@pytest.mark.parametrize("path, method, expected_status, message", [
    ("/v1/models/other:predict", "POST", 404, "Servable not found for request: Latest(other)"),
    (f"/v1/models/{MODEL}/versions/7:predict", "POST", 404, f"Servable not found for request: Specific({MODEL}, 7)"),
    (f"/v1/models/{MODEL}:predict", "GET", 405, "method GET not allowed"),
    (f"/v1/models/{MODEL}", "POST", 405, "method POST not allowed"),
    (f"/v1/models/{MODEL}:classify", "POST", 404, ""),
])
def test_bad_url_or_method_is_a_json_error(server, store, path, method, expected_status, message):
    body = {"instances": [ROW]} if method == "POST" else None
    status, answer = call(server.port, path, body, method=method)
    assert status == expected_status and list(answer) == ["error"] and message in answer["error"], answer
    assert_good_predict(server.port, store[1])


def test_request_bodies_are_never_logged(server, caplog):
    caplog.set_level(logging.DEBUG)
    marker = "private-user-7f3a"
    assert call(server.port, f"/v1/models/{MODEL}:predict", {"instances": [{**ROW, "user_id": [marker]}]})[0] == 400
    assert call(server.port, f"/v1/models/{MODEL}:predict", {"instances": [{**ROW, "user_id": marker}]})[0] == 200
    assert f"POST /v1/models/{MODEL}:predict -> 400" in caplog.text
    assert marker not in caplog.text


def test_body_far_over_the_limit_is_refused_before_it_is_read(server, store):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", f"/v1/models/{MODEL}:predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(10 ** 9))
    connection.endheaders()  # no body sent: the answer comes from the header alone
    assert connection.getresponse().status == 413
    connection.close()
    assert_good_predict(server.port, store[1])


# ---------------------------------------------------------------------------------------------
# Versions


def wait_for(condition, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def served_version(port):
    status, body = call(port, f"/v1/models/{MODEL}")
    return int(body["model_version_status"][0]["version"]) if status == 200 else None


def test_no_version_yet_is_404_until_one_is_published(tmp_path, store):
    base = base_path_with(tmp_path, store)
    server = start_server(base)
    try:
        assert call(server.port, f"/v1/models/{MODEL}:predict", {"instances": GOOD_ROWS}) == (
            404, {"error": f"Servable not found for request: Latest({MODEL})"})
        assert call(server.port, f"/v1/models/{MODEL}")[0] == 404
        publish(store[1], base, 1)
        assert wait_for(lambda: served_version(server.port) == 1)
        assert_good_predict(server.port, store[1])
    finally:
        server.stop()


def test_incomplete_and_broken_versions_are_skipped(tmp_path, store, caplog):
    caplog.set_level(logging.INFO, logger="tfrs_llmrec.serving.server")
    base = base_path_with(tmp_path, store, 1)
    server = start_server(base)
    try:
        shutil.copytree(store[2], base / ".partial-5")  # not numeric: still being written
        shutil.copytree(store[2], base / "6.tmp")
        (base / "7" / "variables").mkdir(parents=True)  # numeric, but no saved_model.pb
        publish(store[2], base, 3, break_it=True)
        assert wait_for(lambda: "version 3 failed to load" in caplog.text)
        assert "versions on disk [1, 3]" in caplog.text
        assert served_version(server.port) == 1
        assert_good_predict(server.port, store[1])
        publish(store[2], base, 2)  # older than the broken 3, so now the newest loadable one
        assert wait_for(lambda: served_version(server.port) == 2)
        assert_good_predict(server.port, store[2])
        assert call(server.port, f"/v1/models/{MODEL}/versions/2:predict", {"instances": GOOD_ROWS})[0] == 200
        assert call(server.port, f"/v1/models/{MODEL}/versions/1:predict", {"instances": GOOD_ROWS}) == (
            404, {"error": f"Servable not found for request: Specific({MODEL}, 1)"})
        shutil.rmtree(base / "2")  # the served version withdrawn: back to the newest remaining one
        assert wait_for(lambda: served_version(server.port) == 1)
        assert_good_predict(server.port, store[1])
    finally:
        server.stop()


def test_hot_swap_under_load_fails_no_request(tmp_path, store):
    base = base_path_with(tmp_path, store, 1)
    server = start_server(base)
    answers = {version: expected_rows(store[version], GOOD_ROWS) for version in (1, 2)}
    body = json.dumps({"instances": GOOD_ROWS})
    stop, failures, seen = threading.Event(), [], {}

    def client(number):
        versions = seen.setdefault(number, [])
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # keep-alive
        while not stop.is_set():
            try:
                connection.request("POST", f"/v1/models/{MODEL}:predict", body,
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError) as error:
                failures.append(repr(error))
                connection.close()
                continue
            if response.status != 200:
                failures.append((response.status, payload))
                continue
            item_ids = [row["item_ids"] for row in payload["predictions"]]
            scores = [row["scores"] for row in payload["predictions"]]
            version = next((version for version, (expected_scores, expected_ids) in answers.items()
                            if expected_ids.tolist() == item_ids and np.allclose(scores, expected_scores)), None)
            if version is None:
                failures.append(("outputs of no version", payload))
                continue
            versions.append((time.monotonic(), version))
        connection.close()

    threads = [threading.Thread(target=client, args=(number,)) for number in range(4)]
    try:
        for thread in threads:
            thread.start()
        assert wait_for(lambda: all(len(seen.get(n, [])) >= 5 for n in range(4)))
        published = time.monotonic()
        publish(store[2], base, 2)
        switched = wait_for(lambda: all(sum(v == 2 for _, v in seen[n]) >= 5 for n in range(4)), timeout_s=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        server.stop()
    assert failures == []
    assert switched
    for versions in seen.values():
        order = [version for _, version in versions]
        first_v2 = order.index(2)
        # Each client saw version 1, then version 2 from some request on, never 1 again after that.
        assert order[:first_v2] == [1] * first_v2 and order[first_v2:] == [2] * (len(order) - first_v2)
        assert first_v2 > 0
        assert versions[first_v2][0] - published < 10.0


# ---------------------------------------------------------------------------------------------
# The server as a process


def test_stop_drains_a_keep_alive_client_that_never_pauses(tmp_path, store):
    server = start_server(base_path_with(tmp_path, store, 1))
    body = json.dumps({"instances": GOOD_ROWS})
    statuses, stop = [], threading.Event()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        while not stop.is_set():
            try:
                connection.request("POST", f"/v1/models/{MODEL}:predict", body)
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
            except (OSError, http.client.HTTPException):
                return  # the server closed the connection and no longer accepts new ones

    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert wait_for(lambda: len(statuses) >= 5)
        started = time.monotonic()
        assert server.stop(drain_timeout_s=20)
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        thread.join()
    assert set(statuses) == {200}


def test_missing_base_path_fails_at_start_with_a_clear_error(tmp_path, caplog):
    assert main(["--model_base_path", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert f"model_base_path {tmp_path / 'missing'} is not a directory" in caplog.text


def port_open(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_sigterm_finishes_the_request_in_flight_closes_the_port_and_exits_zero(tmp_path, store, subprocess_env):
    base = base_path_with(tmp_path, store, 1)
    port = portpicker.pick_unused_port()
    log = tmp_path / "server.log"  # a file, not a pipe: a full pipe would block the server
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "tfrs_llmrec.serving.server", "--model_base_path", str(base), "--port", str(port),
             "--host", "127.0.0.1"], env=subprocess_env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: process.poll() is None and port_open(port) and served_version(port) == 1,
                        timeout_s=120), process.poll()
        # Longer than the 5 s that waitress's own shutdown waits for its threads, so only a real
        # drain gets this answer out.
        seconds = 6.0
        slow = {}

        def slow_request():
            try:
                slow["answer"] = call(port, f"/v1/models/{MODEL}:predict",
                                      {"signature_name": "sleep", "instances": [seconds]})
            except OSError as error:
                slow["answer"] = repr(error)
            slow["answered"] = time.monotonic()

        slow_thread = threading.Thread(target=slow_request)
        slow_thread.start()
        time.sleep(1.0)  # the request is now running its signature
        process.send_signal(signal.SIGTERM)
        assert wait_for(lambda: not port_open(port), timeout_s=10)
        port_closed = time.monotonic()
        slow_thread.join(timeout=60)
        assert slow["answer"] == (200, {"predictions": [seconds]})
        assert slow["answered"] > port_closed  # answered while draining, after the port had closed
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert "Traceback" not in output, output
    assert "shutting down" in output
