"""Per-op self time of a TensorFlow call, from the TF profiler's trace (no extra package).

    profile = profile_ops(lambda: model.train_on_batch(batch), steps=1)
    print_op_tables(profile, "R50-FPN 512, batch 1", top=5)

``tf.profiler.experimental`` writes an XSpace protobuf (``*.xplane.pb``); its schema,
``xplane_pb2``, ships with TensorFlow itself, so neither TensorBoard's profile plugin nor
xprof is needed to read it. On the host (CPU) plane every kernel the executor runs is one
event named ``"op_name:OpType"`` on the thread that ran it (the inter-op pool's
``tf_Compute`` threads); intra-op (Eigen/oneDNN) work lies within that event. An event's
self time is its duration minus the op events nested in it on the same thread, so an op
that runs a function or a loop body is not counted twice. The eager call that launches the
whole ``tf.function`` (``EagerLocalExecute: __inference_...``) is the step itself and is
left out. Ops on the two inter-op threads run concurrently, so their sum (``op_ms``) can
exceed the step's wall time; shares are of that sum. On a GPU the kernels are on the
device planes, which this does not read: it measures CPU steps.
"""

import collections
import glob
import os
import shutil
import tempfile
import time

import tensorflow as tf

from common import print_table

# Host-plane events that are scheduling, not kernels ("ExecutorState::Process",
# "ThreadpoolListener::Record") carry "::"; the eager launcher of the step is the step.
_LAUNCHER_PREFIXES = ("EagerLocalExecute", "__inference_")


def _xspace(logdir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return space


def _op_self_times(space):
    """{(op_name, op_type): [count, self picoseconds]} over the host plane's threads."""
    totals = collections.defaultdict(lambda: [0, 0])
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            ops = []  # (start, end, key) of this thread's op events
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if "::" in name or ":" not in name or name.startswith(_LAUNCHER_PREFIXES):
                    continue
                op_name, op_type = name.rsplit(":", 1)
                if op_type.startswith(_LAUNCHER_PREFIXES[1]):
                    continue
                ops.append((event.offset_ps, event.offset_ps + event.duration_ps, (op_name, op_type.strip())))
            ops.sort(key=lambda op: (op[0], -op[1]))
            stack = []  # enclosing ops still open: [end, key, self time]
            for start, end, key in ops:
                while stack and stack[-1][0] <= start:
                    _close(stack.pop(), totals)
                if stack:
                    stack[-1][2] -= end - start
                stack.append([end, key, end - start])
            while stack:
                _close(stack.pop(), totals)
    return totals


def _close(entry, totals):
    _, key, self_ps = entry
    totals[key][0] += 1
    totals[key][1] += max(self_ps, 0)


def profile_ops(fn, steps=1, top=10):
    """Run ``fn()`` ``steps`` times under the TF profiler; per-step op self times.

    Call it after warm-up (traced, compiled). Returns a JSON-able dict:
    ``step_ms`` (wall time per step, under the profiler), ``op_ms`` (sum of op self
    times per step), ``by_type`` [[op type, ops per step, ms per step], ...] and
    ``by_name`` [[op name, op type, ms per step], ...], each the ``top`` largest first.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    logdir = tempfile.mkdtemp(prefix="op_profile_")
    try:
        options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0,
                                                           device_tracer_level=0)
        tf.profiler.experimental.start(logdir, options=options)
        start = time.perf_counter()
        try:
            for _ in range(steps):
                fn()
        finally:
            seconds = time.perf_counter() - start
            tf.profiler.experimental.stop()
        totals = _op_self_times(_xspace(logdir))
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    by_type = collections.defaultdict(lambda: [0, 0])
    for (_, op_type), (count, ps) in totals.items():
        by_type[op_type][0] += count
        by_type[op_type][1] += ps
    ms = 1e-9 / steps  # picoseconds over all steps -> milliseconds per step
    return {
        "step_ms": seconds * 1000 / steps,
        "op_ms": sum(ps for _, ps in totals.values()) * ms,
        "by_type": [[t, c / steps, ps * ms] for t, (c, ps) in
                    sorted(by_type.items(), key=lambda kv: -kv[1][1])[:top]],
        "by_name": [[n, t, ps * ms] for (n, t), (_, ps) in
                    sorted(totals.items(), key=lambda kv: -kv[1][1])[:top]],
    }


def op_table_rows(profile, top=5):
    """(type rows, name rows) for print_table: the ``top`` ops by type and by name."""
    total = profile["op_ms"] or 1.0
    types = [[t, f"{c:.0f}", f"{ms:.1f}", f"{100 * ms / total:.1f}%"] for t, c, ms in profile["by_type"][:top]]
    names = [[n, t, f"{ms:.1f}", f"{100 * ms / total:.1f}%"] for n, t, ms in profile["by_name"][:top]]
    return types, names


def print_op_tables(profile, label, top=5):
    """The ``top`` ops of ``profile`` by type and by name (so the layer shows), ms per step."""
    types, names = op_table_rows(profile, top)
    print_table(f"Top {top} op types, {label}: {profile['step_ms']:.0f} ms/step under the TF profiler, "
                f"{profile['op_ms']:.0f} ms of op self time (both inter-op threads)",
                ["op type", "ops/step", "ms/step", "% of op time"], types, left=(0,))
    print_table(f"Top {top} ops by name, {label}", ["op name", "op type", "ms/step", "% of op time"], names,
                left=(0, 1))
