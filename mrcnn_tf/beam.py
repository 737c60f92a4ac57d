"""Batch inference on Apache Beam: ``RunInference`` over the exported SavedModel.

    pipeline | read_images("images/*.jpg")            -> (file name, encoded bytes) | dead letter
             | RunInference(KeyedModelHandler(SavedModelHandler("serving/x/1")))
             | to_record                               -> one COCO-style record per image

The handler loads the SavedModel of :func:`mrcnn_tf.export.export_saved_model`
with ``tf.saved_model.load`` (Beam's own TensorFlow handler goes through
``keras.models.load_model``, which Keras 3 refuses for SavedModel
directories: apache/beam#30616) and runs its ``serving_default`` signature on
a batch of encoded images: the decode, resize, detection and mask pasting are
the served graph's, and each image's rows are cut out of the padded batch by
:func:`mrcnn_tf.inference.unbatch_results`, as for ``detect()``.

Files that are not a decodable JPEG/PNG, and batches the graph rejects, go to
the dead-letter output as ``{"file_name", "error"}`` instead of failing the job.
"""

import json
import os
import re

import tensorflow as tf

try:
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
except ImportError as error:  # an optional extra: say how to get it
    raise ImportError("mrcnn_tf.beam needs Apache Beam: pip install 'mrcnn_tf[beam]' "
                      f"(apache-beam>=2.77) ({error})") from error

from mrcnn_tf.evaluate import detections_to_coco
from mrcnn_tf.export.signatures import BAD_IMAGE_MESSAGE, PNG_MAGIC
from mrcnn_tf.inference import unbatch_results

DEAD_LETTER = "dead_letter"
SIGNATURE = "serving_default"


def resolve_model_dir(model_dir):
    """A SavedModel version directory, or a base directory of numbered versions -> the newest version.

    Raises:
        FileNotFoundError: naming ``model_dir`` when it holds neither.
    """
    model_dir = os.fspath(model_dir)
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = []
    if tf.io.gfile.isdir(model_dir):
        versions = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(model_dir)
                    if re.fullmatch(r"\d+/?", name)]
    if not versions:
        raise FileNotFoundError(f"model directory {model_dir!r} has no saved_model.pb and no numbered "
                                "version subdirectories (export with `mrcnn-tf export`)")
    return os.path.join(model_dir, str(max(versions)))


class SavedModelHandler(ModelHandler):
    """RunInference handler: encoded JPEG/PNG bytes -> the ``detect()`` dict of each image.

    Args:
        model_dir: the exported SavedModel (a version directory, or the base
            directory: its newest version), any path TF's filesystem reads
            (local, ``gs://``, a mounted share) on every worker.
        min_batch_size, max_batch_size: images per signature call; a batch is
            padded to its largest image in-graph.
    Elements are ``bytes``; each ``PredictionResult.inference`` is a dict:
    ``boxes`` float32 [N, (y1, x1, y2, x2)] original pixels, ``rois`` int32,
    ``class_ids`` int32 [N], ``scores`` float32 [N], ``masks`` bool [H, W, N].
    """

    def __init__(self, model_dir, min_batch_size=1, max_batch_size=8):
        super().__init__()
        if not 1 <= int(min_batch_size) <= int(max_batch_size):
            raise ValueError("need 1 <= min_batch_size <= max_batch_size, "
                             f"got {min_batch_size}, {max_batch_size}")
        self._model_dir = resolve_model_dir(model_dir)
        self._batch = {"min_batch_size": int(min_batch_size), "max_batch_size": int(max_batch_size)}

    def load_model(self):
        model = tf.saved_model.load(self._model_dir)
        if SIGNATURE not in model.signatures:
            raise ValueError(f"{self._model_dir}: no {SIGNATURE!r} signature (signatures: "
                             f"{sorted(model.signatures)}); export with mrcnn_tf.export.export_saved_model")
        return model

    def run_inference(self, batch, model, inference_args=None):
        outputs = model.signatures[SIGNATURE](images=tf.constant(list(batch), tf.string))
        results = unbatch_results({name: value.numpy() for name, value in outputs.items()})
        return [PredictionResult(example, result) for example, result in zip(batch, results)]

    def batch_elements_kwargs(self):
        return dict(self._batch)


def decode_error(data):
    """Why ``data`` (bytes) is not an image the served graph decodes, or None if it is.

    The graph's own check and decoder (``export.signatures``): JPEG or PNG
    magic, then ``tf.io.decode_image``, so a file that passes here decodes there.
    """
    if not (data.startswith(PNG_MAGIC) or bool(tf.io.is_jpeg(data))):
        return BAD_IMAGE_MESSAGE
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        return f"cannot decode: {error.message.splitlines()[0]}"
    if min(image.shape[:2]) < 1:
        return "image has no pixels"
    return None


class ReadImage(beam.DoFn):
    """``ReadableFile`` -> (file name, bytes); undecodable files -> the dead-letter output."""

    def process(self, readable_file):
        name = readable_file.metadata.path
        try:
            data = readable_file.read()
        except OSError as error:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"file_name": name, "error": f"cannot read: {error}"})
            return
        error = decode_error(data)
        if error is None:
            yield name, data
        else:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"file_name": name, "error": error})


def to_record(file_name, prediction):
    """One image's ``PredictionResult`` -> a JSON-safe record.

    Returns:
        ``{"file_name", "height", "width", "detections": [...]}``, each detection
        a COCO result without ``image_id``: ``bbox`` [x, y, w, h] original
        pixels, ``category_id``, ``score``, ``segmentation`` (compressed RLE).
    """
    result = prediction.inference
    height, width = result["masks"].shape[:2]
    detections = detections_to_coco([result], [0])
    for detection in detections:
        del detection["image_id"]
    return {"file_name": file_name, "height": int(height), "width": int(width), "detections": detections}


def _failed_records(failure):
    """A failed RunInference batch ([(file name, bytes)], exception) -> one dead-letter record per file."""
    batch, error = failure
    message = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return [{"file_name": name, "error": message} for name, _data in batch]


def detect_files(pipeline, model_dir, input_pattern, batch_size=8):
    """Add the detection stages to ``pipeline``.

    Args:
        pipeline: a ``beam.Pipeline`` (any runner).
        model_dir: the SavedModel, as for :class:`SavedModelHandler`.
        input_pattern: file glob (``images/*.jpg``, ``gs://bucket/images/*``).
        batch_size: at most this many images per signature call.
    Returns:
        (records, dead_letter): PCollections of :func:`to_record` dicts and
        of ``{"file_name", "error"}`` dicts.
    """
    handler = KeyedModelHandler(SavedModelHandler(model_dir, max_batch_size=batch_size))
    files = (pipeline
             | "Match" >> fileio.MatchFiles(input_pattern)
             | "ReadMatches" >> fileio.ReadMatches()
             | "Decode" >> beam.ParDo(ReadImage()).with_outputs(DEAD_LETTER, main="images"))
    inferred, failures = files.images | "Detect" >> RunInference(handler).with_exception_handling()
    records = inferred | "ToRecord" >> beam.MapTuple(to_record)
    failed = failures.failed_inferences | "FailedRecords" >> beam.FlatMap(_failed_records)
    dead_letter = (files[DEAD_LETTER], failed) | "DeadLetter" >> beam.Flatten()
    return records, dead_letter


def write_jsonl(records, output_prefix, label):
    """Write dicts as JSON lines, ``<output_prefix>-SSSSS-of-NNNNN.jsonl``."""
    return (records | f"{label}Json" >> beam.Map(json.dumps, sort_keys=True)
            | f"{label}Write" >> beam.io.WriteToText(output_prefix, file_name_suffix=".jsonl"))


def run(model_dir, input_pattern, output_prefix, batch_size=8, pipeline_args=None):
    """Run the detection pipeline to completion.

    Writes ``<output_prefix>-*.jsonl`` (records) and
    ``<output_prefix>-dead_letter-*.jsonl``. ``pipeline_args`` are Beam's
    command-line options (``--runner``, ``--project``, ...); without
    ``--runner`` the embedded DirectRunner runs in multi-process mode.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(pipeline_args or [])
    if not any(arg.startswith("--runner") for arg in args):
        args += ["--runner=DirectRunner", "--direct_running_mode=multi_processing"]
    if not any(arg.startswith("--direct_num_workers") for arg in args):
        args.append("--direct_num_workers=0")  # 0: one worker per core
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        records, dead_letter = detect_files(pipeline, model_dir, input_pattern, batch_size)
        write_jsonl(records, output_prefix, "Records")
        write_jsonl(dead_letter, f"{output_prefix}-dead_letter", "DeadLetter")


__all__ = ["DEAD_LETTER", "ReadImage", "SavedModelHandler", "decode_error", "detect_files",
           "resolve_model_dir", "run", "to_record", "write_jsonl"]
