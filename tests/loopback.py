"""For tests that talk over loopback: free ports, and the REST server of samples/serving."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REST_SERVER = os.path.join(REPO, "samples", "serving", "rest_server.py")


def free_ports(count):
    """``count`` distinct loopback ports free right now (all bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def post(url, payload, timeout=120):
    """(HTTP status, JSON answer) of a POST; ``payload`` is raw bytes or a JSON-able object."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@contextlib.contextmanager
def rest_server(model_base_path, model_name, startup_timeout=180):
    """Run the REST front-end on a free loopback port until the model answers (bounded).

    Yields a namespace: ``base`` (``http://127.0.0.1:<port>/v1/models/<name>``),
    ``port``, ``status`` (the model status JSON) and ``process``. The server is
    always stopped afterwards.
    """
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, REST_SERVER, "--model_base_path", model_base_path,
         "--model_name", model_name, "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1/models/{model_name}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            try:
                with urllib.request.urlopen(base, timeout=5) as response:
                    status = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "REST server did not start"
                time.sleep(0.5)
        yield types.SimpleNamespace(base=base, port=port, status=status, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        process.stdout.close()
