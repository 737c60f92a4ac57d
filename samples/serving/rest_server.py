"""A small stdlib REST front-end speaking TF Serving's REST predict API.

For trying an exported model without TF Serving (its requests and responses
have the same shape, so ``client.py`` works against either)::

    python samples/serving/rest_server.py --model_base_path exports/shapes \
        --model_name shapes --port 8501

Endpoints:
    GET  /v1/models/<name>            version status, as TF Serving reports it
    POST /v1/models/<name>:predict    (also /v1/models/<name>/versions/<v>:predict)
        row format:      {"instances": [{"b64": "..."}, ...]}
                         or {"instances": [{"images": {"b64": "..."}}, ...]}
                         -> {"predictions": [{output: value, ...} per image]}
        columnar format: {"inputs": {"images": [{"b64": "..."}, ...]}}
                         or {"inputs": [{"b64": "..."}, ...]}
                         -> {"outputs": {output: [value per image]}}
        "signature_name": "serving_tensor" takes nested uint8 lists instead.
A bad request gets HTTP 400 and ``{"error": "..."}``; the server keeps serving.
The model runs entirely in the SavedModel graph: this file only converts JSON.
"""

import argparse
import base64
import binascii
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf

INPUT_NAME = "images"
DEFAULT_SIGNATURE = "serving_default"
MAX_BODY_BYTES = 64 * 1024 * 1024
PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
STATUS_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?/?$")


class BadRequest(Exception):
    """A client error: answered with HTTP 400."""


def latest_version(model_base_path):
    """(version int, path) of the largest integer subdirectory."""
    versions = [int(d) for d in os.listdir(model_base_path)
                if d.isdigit() and os.path.isdir(os.path.join(model_base_path, d))]
    if not versions:
        raise FileNotFoundError(f"no numbered version directory under {model_base_path}")
    version = max(versions)
    return version, os.path.join(model_base_path, str(version))


def _decode_b64(value):
    if not (isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)):
        raise BadRequest('each image must be {"b64": "<base64 of JPEG/PNG bytes>"}')
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRequest(f"invalid base64 image: {err}") from None


def _input_tensor(values, dtype):
    """JSON values of the ``images`` input -> tensor of the signature's dtype."""
    if not isinstance(values, list):
        raise BadRequest(f'"{INPUT_NAME}" must be a list of images')
    if dtype == tf.string:
        return tf.constant([_decode_b64(v) for v in values], tf.string, shape=[len(values)])
    try:
        array = np.array(values)
    except ValueError as err:
        raise BadRequest(f"images must be a regular nested list: {err}") from None
    if array.dtype.kind not in "iu" or array.ndim != 4 or array.shape[-1] != 3 \
            or array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise BadRequest(f"images must be integers 0..255 of shape [N, H, W, 3], got shape {array.shape}")
    return tf.constant(array.astype(np.uint8))


def parse_request(body, signatures):
    """Request JSON -> (signature function, input tensor, row format?)."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"body is not JSON: {err}") from None
    if not isinstance(request, dict):
        raise BadRequest("request must be a JSON object")
    name = request.get("signature_name", DEFAULT_SIGNATURE)
    if name not in signatures:
        raise BadRequest(f"unknown signature_name {name!r}; have {sorted(signatures)}")
    signature = signatures[name]
    dtype = signature.structured_input_signature[1][INPUT_NAME].dtype
    if ("instances" in request) == ("inputs" in request):
        raise BadRequest('request must have exactly one of "instances" (row) or "inputs" (columnar)')
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list):
            raise BadRequest('"instances" must be a list')
        # A named instance is {"images": value}; a bare value is the single input.
        values = [inst[INPUT_NAME] if isinstance(inst, dict) and INPUT_NAME in inst else inst
                  for inst in instances]
        return signature, _input_tensor(values, dtype), True
    inputs = request["inputs"]
    values = inputs.get(INPUT_NAME) if isinstance(inputs, dict) and "b64" not in inputs else inputs
    return signature, _input_tensor(values, dtype), False


def _error_text(err):
    """The useful line of a TF runtime error (the assertion message)."""
    match = re.search(r"assertion failed: \[(.*?)\]", err.message)
    if match:
        return match.group(1)
    lines = [line.strip() for line in err.message.splitlines()
             if line.strip() and not line.startswith(("Graph execution error", "Detected at node",
                                                      "<stack traces")) and "[[{{" not in line]
    return lines[0] if lines else err.message


def predict(signature, images, row_format):
    """Run the signature; JSON-ready response dict."""
    try:
        outputs = signature(**{INPUT_NAME: images})
    except tf.errors.InvalidArgumentError as err:
        raise BadRequest(_error_text(err)) from None
    outputs = {name: value.numpy() for name, value in outputs.items()}
    if row_format:
        count = len(next(iter(outputs.values())))
        return {"predictions": [{name: value[i].tolist() for name, value in outputs.items()}
                                for i in range(count)]}
    return {"outputs": {name: value.tolist() for name, value in outputs.items()}}


def make_handler(model_name, version, signatures, verbose=False):
    """A request handler class bound to one loaded model."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code, payload):
            body = json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _check_model(self, match):
            if match.group(1) != model_name:
                self._send(404, {"error": f"Servable not found for request: {match.group(1)}"})
                return False
            if match.group(2) is not None and int(match.group(2)) != version:
                self._send(404, {"error": f"version {match.group(2)} of {model_name} is not loaded"})
                return False
            return True

        def do_GET(self):  # noqa: N802 (http.server's naming)
            match = STATUS_PATH.match(self.path)
            if not match:
                self._send(404, {"error": f"unknown path {self.path}"})
            elif self._check_model(match):
                self._send(200, {"model_version_status": [{
                    "version": str(version), "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""}}]})

        def do_POST(self):  # noqa: N802
            match = PREDICT_PATH.match(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if 0 < length <= MAX_BODY_BYTES else b""
            if not match:
                self._send(404, {"error": f"unknown path {self.path}"})
                return
            if not self._check_model(match):
                return
            if length > MAX_BODY_BYTES:
                self.close_connection = True  # the unread body makes the connection unusable
                self._send(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
                return
            try:
                self._send(200, predict(*parse_request(body, signatures)))
            except BadRequest as err:
                self._send(400, {"error": str(err)})
            except Exception as err:  # keep serving; report what broke
                self._send(500, {"error": f"{type(err).__name__}: {err}"})

        def log_message(self, fmt, *args):
            if verbose:
                super().log_message(fmt, *args)

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_base_path", required=True, help="directory holding 1/, 2/, ...")
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    version, path = latest_version(args.model_base_path)
    loaded = tf.saved_model.load(path)
    signatures = dict(loaded.signatures)
    server = ThreadingHTTPServer((args.host, args.port),
                                 make_handler(args.model_name, version, signatures, args.verbose))
    server.daemon_threads = True
    print(f"serving {args.model_name} version {version} from {path} on "
          f"http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
