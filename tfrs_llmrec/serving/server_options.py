"""The model server's command-line options, shared by `llmrec serve` and
`python -m tfrs_llmrec.serving.server`; kept free of TensorFlow so `llmrec --help` stays fast."""

import argparse

DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_MAX_BATCH_SIZE = 1024
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_POLL_INTERVAL_S = 1.0  # TF Serving's --file_system_poll_wait_seconds default
# Predict spends its time in TF kernels, which release the GIL, so more threads than waitress's
# default 4 overlap requests on a many-core host.
DEFAULT_THREADS = 8
DEFAULT_DRAIN_TIMEOUT_S = 30.0


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The keyword arguments of `server.serve`, with TF Serving's flag names where it has them."""
    parser.add_argument("--model_base_path", required=True,
                        help="directory of numeric version directories, each a SavedModel (TF Serving's layout)")
    parser.add_argument("--model_name", help="name in the URLs (default: the base path's basename)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"REST port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument("--max_batch_size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help="most rows in one request (default %(default)s)")
    parser.add_argument("--max_request_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="largest request body (default %(default)s)")
    parser.add_argument("--poll_interval_s", type=float, default=DEFAULT_POLL_INTERVAL_S,
                        help="how often to look for a new version (default %(default)s)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="request threads (default %(default)s)")
    parser.add_argument("--drain_timeout_s", type=float, default=DEFAULT_DRAIN_TIMEOUT_S,
                        help="on SIGTERM, how long requests in flight may take to finish (default %(default)s)")
