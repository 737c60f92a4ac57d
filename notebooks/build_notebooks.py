"""Build the notebooks of this folder, and with --execute run them and save them with outputs.

    python notebooks/build_notebooks.py                 # sources only (outputs dropped)
    MRCNN_TINY=1 python notebooks/build_notebooks.py --execute   # what is committed: tiny, ~2 min
    python notebooks/build_notebooks.py --execute demo.ipynb     # one notebook

The notebook sources live here so they are reviewed as code. Executing runs each notebook
in a temporary directory (its ``logs/`` and ``export/`` are thrown away) with the
``python3`` kernel; stderr (TensorFlow's start-up log) is dropped from the saved outputs.
tests/test_notebooks.py checks that the .ipynb files match these sources and executes each
at the tiny setting.
"""

import os
import sys
import tempfile

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_NAME = "python3"

# The parameter cell (tagged "parameters", papermill's convention).
PARAMETERS = '''import os

# MRCNN_TINY=1 (the tests set it) runs every cell at a tiny size in seconds on a CPU.
TINY = os.environ.get("MRCNN_TINY") == "1"
SIZE = 64 if TINY else 128                        # image side, pixels
TRAIN_IMAGES, VAL_IMAGES = (8, 4) if TINY else (500, 50)
EPOCHS = 1 if TINY else 6                         # demo / inspect_model training
STEPS_PER_EPOCH = 2 if TINY else 100
LOG_IMAGES = 0 if TINY else 2                     # validation pictures in TensorBoard each epoch
print(f"TINY={TINY} SIZE={SIZE}")'''

IMPORTS = '''import numpy as np
import keras
import matplotlib.pyplot as plt
from IPython.display import display
%matplotlib inline

keras.utils.set_random_seed(0)'''

SHAPES = '''from mrcnn_tf import MaskRCNN, DataGenerator, presets
from mrcnn_tf.data import ShapesDataset

# Tiny: presets.tiny's narrow heads and few RoIs, with a batch of 2, ShapesConfig's 16 detections
# and a confidence the briefly trained model reaches. The full run keeps ShapesConfig's values.
if TINY:
    config = presets.shapes(**presets.tiny(SIZE, STEPS_PER_EPOCH=STEPS_PER_EPOCH, IMAGES_PER_GPU=2,
                                           DETECTION_MAX_INSTANCES=16, DETECTION_MIN_CONFIDENCE=0.3))
else:
    config = presets.shapes(IMAGE_MIN_DIM=SIZE, IMAGE_MAX_DIM=SIZE, STEPS_PER_EPOCH=STEPS_PER_EPOCH)

train_set, val_set = ShapesDataset(), ShapesDataset()
train_set.load_shapes(TRAIN_IMAGES, SIZE, SIZE, seed=0)
val_set.load_shapes(VAL_IMAGES, SIZE, SIZE, seed=1)
train_set.prepare()
val_set.prepare()
model_dir = os.path.abspath("logs")
print(f"{len(train_set.image_ids)} training, {len(val_set.image_ids)} validation images; "
      f"classes {train_set.class_names}")'''


def preamble():
    parameters = new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    return [parameters, new_code_cell(IMPORTS)]


NOTEBOOKS = {
    "demo.ipynb": [
        new_markdown_cell("# mrcnn_tf demo\n\nDetect shapes with the model the main job trained "
                          "(`python samples/shapes/train_shapes.py` writes `outputs/shapes/logs`), or, "
                          "without it (and always when `MRCNN_TINY=1`), with a quickly trained one."),
        *preamble(),
        new_code_cell(SHAPES),
        new_code_cell('''from mrcnn_tf.model import latest_checkpoint

main_job = os.path.join("..", "outputs", "shapes", "logs")  # relative to notebooks/
checkpoint = None
if not TINY:
    try:
        checkpoint = latest_checkpoint(main_job, config.NAME)
    except FileNotFoundError as error:
        print(error)
if checkpoint is None:
    trainer = MaskRCNN("training", config, model_dir)
    trainer.train(train_set, None, config.LEARNING_RATE, epochs=EPOCHS, layers="all", verbose=0)
    checkpoint = trainer.find_last()
detector = MaskRCNN("inference", config, model_dir)
report = detector.load_weights(checkpoint)'''),
        new_code_cell('''from mrcnn_tf.visualize import display_instances

images = [val_set.load_image(i) for i in val_set.image_ids[:2]]
for image, r in zip(images, detector.detect(images)):
    print(f"{len(r['class_ids'])} instances: "
          f"{[(val_set.class_names[c], round(float(s), 2)) for c, s in zip(r['class_ids'], r['scores'])]}")
    fig = display_instances(image, r["rois"], r["masks"], r["class_ids"], val_set.class_names, r["scores"],
                            figsize=(4, 4))
    display(fig)
    plt.close(fig)'''),
        new_markdown_cell("## A COCO model from torchvision\n\ntorchvision's COCO Mask R-CNN in mrcnn_tf "
                          "(README \"Pretrained models\"), if its weights file is on disk: nothing is "
                          "downloaded, and without a file the cell is skipped."),
        new_code_cell('''# torchvision's .pth (needs torch), e.g. maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth,
# or the .safetensors / .npz that `python -m mrcnn_tf.pretrained convert` made of it.
PRETRAINED_WEIGHTS = os.environ.get("MRCNN_PRETRAINED_WEIGHTS")
PRETRAINED_NAME = os.environ.get("MRCNN_PRETRAINED_NAME", "maskrcnn_resnet50_fpn_v2")
PHOTO = os.environ.get("MRCNN_PRETRAINED_IMAGE")  # a photo to detect in (default: a shapes image above)
if not PRETRAINED_WEIGHTS:
    print("no MRCNN_PRETRAINED_WEIGHTS: the COCO model is skipped")
else:
    from mrcnn_tf.data import Dataset
    from mrcnn_tf.pretrained import COCO_CATEGORY_NAMES, torchvision_model

    coco_model = torchvision_model(PRETRAINED_NAME, weights=PRETRAINED_WEIGHTS)  # torchvision's test settings
    photo = images[0]
    if PHOTO:
        reader = Dataset()  # its load_image: EXIF rotation, grey and RGBA to RGB
        reader.add_image("photo", 0, PHOTO)
        reader.prepare()
        photo = reader.load_image(0)
    r = coco_model.detect([photo])[0]
    keep = r["scores"] >= 0.5  # torchvision keeps >= 0.05 for COCO AP; draw the confident ones
    print(f"{int(keep.sum())} of {len(keep)} detections with score >= 0.5: "
          f"{sorted({COCO_CATEGORY_NAMES[c] for c in r['class_ids'][keep]})}")
    fig = display_instances(photo, r["rois"][keep], r["masks"][..., keep], r["class_ids"][keep],
                            COCO_CATEGORY_NAMES, r["scores"][keep], figsize=(8, 8))
    display(fig)
    plt.close(fig)'''),
    ],
    "train_shapes.ipynb": [
        new_markdown_cell("# Training on shapes with `model.fit`\n\nConfig, dataset, `DataGenerator`, "
                          "training by stages, evaluation (VOC and COCO), pictures, export to a "
                          "SavedModel and a query of it."),
        *preamble(),
        new_code_cell(SHAPES + "\nconfig.display()"),
        new_code_cell('''# One batch as model.fit sees it: a dict keyed like the training model's inputs.
batch = DataGenerator(train_set, config, seed=0)[0]
{name: (value.shape, value.dtype.name) for name, value in batch.items()}'''),
        new_code_cell('''model = MaskRCNN("training", config, model_dir)
print(f"{model.keras_model.count_params():,} parameters")
# Stage 1: the heads (RPN, FPN, box and mask heads); stage 2: every layer.
# `epochs` is the epoch to stop at, counted across calls, so the stages chain.
heads = model.train(train_set, val_set, config.LEARNING_RATE, epochs=1 if TINY else 4, layers="heads",
                    verbose=0, log_images=LOG_IMAGES)
history = model.train(train_set, val_set, config.LEARNING_RATE, epochs=2 if TINY else 12, layers="all",
                      verbose=0, log_images=LOG_IMAGES)
print("checkpoints:", sorted(os.listdir(model.log_dir)))
{name: [round(v, 3) for v in heads.history[name] + values] for name, values in history.history.items()}'''),
        new_code_cell('''fig, ax = plt.subplots(figsize=(5, 3))
for name in ("loss", "val_loss"):
    ax.plot(range(1, model.epoch + 1), heads.history[name] + history.history[name], "o-", label=name)
ax.set_xlabel("epoch"); ax.legend()
display(fig); plt.close(fig)'''),
        new_code_cell('''from mrcnn_tf.evaluate import coco_evaluate, compute_mAP, run_detections

detector = MaskRCNN("inference", config, model_dir)
detector.load_weights(model.find_last())
ids, results = run_detections(detector, val_set)  # detect once, score twice
print(f"VOC mask mAP@0.5: {compute_mAP(detector, val_set, image_ids=ids, results=results):.3f}")
metrics = coco_evaluate(detector, val_set, image_ids=ids, results=results, verbose=False)
{kind: {k: round(v, 3) for k, v in values.items() if k in ("AP", "AP50", "AP75")}
 for kind, values in metrics.items()}'''),
        new_code_cell('''from mrcnn_tf.visualize import display_instances

image = val_set.load_image(0)
r = results[0]
fig = display_instances(image, r["rois"], r["masks"], r["class_ids"], val_set.class_names, r["scores"],
                        figsize=(4, 4), title="detections")
display(fig); plt.close(fig)'''),
        new_code_cell('''import tensorflow as tf
from mrcnn_tf import export_saved_model

path = export_saved_model(detector, os.path.abspath("export"))
print("exported to", os.path.relpath(path), sorted(os.listdir(path)))
served = tf.saved_model.load(path)
out = served.signatures["serving_default"](images=tf.stack([tf.io.encode_png(image)]))
n = int(out["num_detections"][0])
print({k: tuple(v.shape) for k, v in sorted(out.items())})
print(f"SavedModel: {n} detections, classes {out['detection_classes'][0, :n].numpy().tolist()}; "
      f"detect(): {len(r['class_ids'])} detections, classes {r['class_ids'].tolist()}")'''),
    ],
    "inspect_data.ipynb": [
        new_markdown_cell("# Inspecting the data\n\nImages, masks, boxes, mini masks, resize modes, "
                          "anchors and RPN targets, augmentation."),
        *preamble(),
        new_code_cell(SHAPES),
        new_code_cell('''from mrcnn_tf.data import extract_bboxes
from mrcnn_tf.visualize import display_instances, display_top_masks

image_id = train_set.image_ids[0]
image = train_set.load_image(image_id)
masks, class_ids = train_set.load_mask(image_id)
boxes = extract_bboxes(masks)  # (y1, x1, y2, x2) pixels, y2/x2 exclusive
print("image", image.shape, image.dtype, "| masks", masks.shape, masks.dtype, "| classes", class_ids)
print("boxes", boxes.tolist())
for fig in (display_top_masks(image, masks, class_ids, train_set.class_names),
            display_instances(image, boxes, masks, class_ids, train_set.class_names, figsize=(4, 4))):
    display(fig); plt.close(fig)'''),
        new_code_cell('''from mrcnn_tf.ops.masks import crop_masks, expand_masks

# Mini masks: each mask sampled at MINI_MASK_SHAPE cell centres in its box, and pasted back.
mini = crop_masks(masks, boxes, config.MINI_MASK_SHAPE).numpy()
restored = expand_masks(mini, boxes, image.shape[:2]).numpy()
iou = [(m & r).sum() / max((m | r).sum(), 1) for m, r in zip(np.moveaxis(masks, -1, 0),
                                                             np.moveaxis(restored, -1, 0))]
print("mini masks", mini.shape, "| IoU with the original after the round trip:", np.round(iou, 3))
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, picture, title in zip(axes, (masks[..., 0], mini[..., 0], restored[..., 0]),
                              ("mask", f"mini mask {mini.shape[:2]}", "expanded back")):
    ax.imshow(picture, cmap="gray"); ax.set_title(title); ax.axis("off")
display(fig); plt.close(fig)'''),
        new_code_cell('''from mrcnn_tf.ops.image import RESIZE_MODES, crop_offset, resize_image, scaled_size

wide = np.concatenate([image, image], axis=1)  # a 1:2 image shows how the modes differ
fig, axes = plt.subplots(1, len(RESIZE_MODES), figsize=(3 * len(RESIZE_MODES), 3))
for ax, mode in zip(axes, RESIZE_MODES):
    crop_yx = None
    if mode == "crop":  # training crops the scaled image at a random offset
        _, height, width = scaled_size(wide.shape[0], wide.shape[1], mode, min_dim=SIZE)
        crop_yx = crop_offset([height, width], SIZE, np.random.default_rng(0).random(2))
    out = resize_image(wide, mode, min_dim=SIZE, max_dim=SIZE, crop_yx=crop_yx)
    resized = out["image"].numpy()  # float pixel values, padding black
    print(f"{mode:13s} {wide.shape} -> {resized.shape} window={out['window'].numpy().tolist()} "
          f"scale={np.round(out['scale'].numpy(), 3).tolist()} crop={out['crop'].numpy().tolist()}")
    ax.imshow(resized / 255); ax.set_title(f"{mode} {resized.shape[:2]}")
display(fig); plt.close(fig)'''),
        new_code_cell('''from mrcnn_tf.ops.image import denormalize
from mrcnn_tf.ops.anchors import pyramid_anchors_for_image
from mrcnn_tf.ops.boxes import decode_boxes
from mrcnn_tf.modeling.rpn_targets import rpn_targets
from mrcnn_tf.visualize import draw_boxes

# The RPN targets of the first image of a training batch (no augmentation, no shuffling),
# as the training graph computes them from the batch's ground truth.
batch = DataGenerator(train_set, config, shuffle=False, seed=0)[0]
molded = denormalize(batch["input_image"][0], config.MEAN_PIXEL, config.PIXEL_STD,
                     config.INPUT_CHANNEL_ORDER).numpy()  # uint8 RGB again
anchors = pyramid_anchors_for_image(molded.shape[:2], config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                    config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE, normalized=False)
match, rpn_bbox = (t.numpy() for t in rpn_targets(
    anchors, batch["input_gt_class_ids"][0], batch["input_gt_boxes"][0],
    config.RPN_TRAIN_ANCHORS_PER_IMAGE, config.RPN_BBOX_STD_DEV,
    config.RPN_POSITIVE_IOU, config.RPN_NEGATIVE_IOU))
positive = anchors[match == 1]
print(f"{len(anchors)} anchors: {(match == 1).sum()} positive, {(match == -1).sum()} negative, "
      f"{(match == 0).sum()} neutral")
# rpn_bbox holds the positives' deltas in anchor order: applied, they land on the GT boxes.
targets = decode_boxes(positive, rpn_bbox[:len(positive)], config.RPN_BBOX_STD_DEV).numpy()
gt_boxes = batch["input_gt_boxes"][0][batch["input_gt_class_ids"][0] > 0]
print("GT boxes:", gt_boxes.tolist())
fig = draw_boxes(molded, boxes=positive, refined_boxes=targets, figsize=(4, 4),
                 title="positive anchors (dotted) and their targets")
display(fig); plt.close(fig)'''),
        new_code_cell('''from mrcnn_tf.data.augment import default_augmentation

augment = default_augmentation()
print(augment)
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, seed in zip(axes, (1, 2, 3)):
    aug_image, aug_masks = augment(image, masks, np.random.default_rng(seed))
    keep = aug_masks.any(axis=(0, 1))  # an instance can leave the picture
    display_instances(aug_image, extract_bboxes(aug_masks[..., keep]), aug_masks[..., keep],
                      class_ids[keep], train_set.class_names, ax=ax, title=f"seed {seed}")
display(fig); plt.close(fig)'''),
    ],
    "inspect_model.ipynb": [
        new_markdown_cell("# Inspecting the model\n\nEach stage of a forward pass, read from the "
                          "inference graph's named outputs: anchors and RPN scores, proposals before "
                          "and after NMS, RoIAlign crops, class and box refinements, detections, masks, "
                          "feature maps, weights."),
        *preamble(),
        new_code_cell(SHAPES),
        new_code_cell('''model = MaskRCNN("inference", config, model_dir)
if TINY:  # seconds count: the stages and shapes, with freshly initialised weights
    print("MRCNN_TINY=1: untrained weights")
else:  # a quickly trained model (every layer, from scratch), its weights in the inference model
    trainer = MaskRCNN("training", config, model_dir)
    trainer.train(train_set, None, config.LEARNING_RATE, epochs=EPOCHS, layers="all", verbose=0)
    model.load_weights(trainer.find_last())

from mrcnn_tf.image_meta import compose_image_meta
from mrcnn_tf.ops.image import inference_resize_mode, mold_batch

# detect()'s pre-processing by hand: resize, pad and normalise (ops/image.py), then the meta vector.
image = val_set.load_image(0)
molded, info = mold_batch(image[None], [image.shape[:2]], inference_resize_mode(config.IMAGE_RESIZE_MODE),
                          config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE,
                          config.MEAN_PIXEL, config.PIXEL_STD, config.INPUT_CHANNEL_ORDER,
                          config.IMAGE_PAD_MULTIPLE)
molded, metas = molded.numpy(), compose_image_meta(info, np.ones([config.NUM_CLASSES])).numpy()
out = model.keras_model.predict({"input_image": molded, "input_image_meta": metas}, verbose=0)
{name: value.shape for name, value in out.items()}'''),
        new_markdown_cell("## RPN: anchor scores and the proposals before and after NMS\n\n"
                          "`ProposalLayer` keeps the `PRE_NMS_LIMIT` best-scoring anchors, applies their "
                          "`rpn_bbox` deltas, clips to the image and runs NMS. Redone here in numpy "
                          "from the graph's outputs, every `rpn_rois` row is one of those refined anchors."),
        new_code_cell('''from mrcnn_tf.ops.boxes import box_iou, clip_boxes, decode_boxes
from mrcnn_tf.visualize import draw_boxes

scale = np.array([SIZE, SIZE, SIZE, SIZE], np.float32)  # normalised -> molded pixels
scores = out["rpn_class"][0, :, 1]
order = np.argsort(-scores, kind="stable")[:config.PRE_NMS_LIMIT]
refined = clip_boxes(decode_boxes(out["anchors"][0, order], out["rpn_bbox"][0, order],
                                  config.RPN_BBOX_STD_DEV), [0.0, 0.0, 1.0, 1.0]).numpy()
proposals = out["rpn_rois"][0]
proposals = proposals[np.any(proposals != 0, axis=1)]  # zero rows are padding
found = np.array([np.abs(refined - p).max(axis=1).min() < 1e-4 for p in proposals])
print(f"{len(scores)} anchors -> {len(order)} refined before NMS -> {len(proposals)} proposals after NMS; "
      f"all proposals among the refined anchors: {found.all()}")
assert found.all(), "rpn_rois should be refined top-scoring anchors"
overlap = box_iou(proposals, proposals).numpy() - np.eye(len(proposals))
print(f"max IoU between proposals: {overlap.max():.2f} (NMS threshold {config.RPN_NMS_THRESHOLD})")
print("top RPN scores:", np.round(scores[order[:10]], 3))
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
draw_boxes(image, boxes=out["anchors"][0, order[:10]] * scale, refined_boxes=refined[:10] * scale,
           ax=axes[0], title="top 10 anchors, refined (before NMS)")
draw_boxes(image, boxes=proposals[:10] * scale, ax=axes[1], title="first 10 proposals (after NMS)")
display(fig); plt.close(fig)'''),
        new_markdown_cell("## RoIAlign on an FPN level\n\nThe model's `backbone_fpn` sub-model (image -> "
                          "P2..P6) gives the feature maps; `mrcnn_tf.ops.roi_align` pools the first proposals "
                          "from P2 (stride 4), in P2's own pixel coordinates."),
        new_code_cell('''import tensorflow as tf
from mrcnn_tf.ops import roi_align

levels = ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"]
features = model.find_layer("backbone_fpn")  # image -> [P2, ..., P6]: the backbone and FPN weights
maps = dict(zip(levels, features.predict(molded, verbose=0)))  # P6 left out
p2 = maps["fpn_p2"]
stride = SIZE / p2.shape[1]
crops = roi_align(p2, proposals[:4] * SIZE / stride, tf.zeros(4, tf.int32), config.POOL_SIZE).numpy()
print("P2", p2.shape, f"(stride {stride:g}) -> crops", crops.shape)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.5))
for ax, crop, box in zip(axes, crops, proposals[:4] * SIZE):
    ax.imshow(crop.mean(axis=-1)); ax.set_title(f"box {np.round(box).astype(int).tolist()}", fontsize=8)
    ax.axis("off")
display(fig); plt.close(fig)'''),
        new_markdown_cell("## Classification and box refinement, detections, masks"),
        new_code_cell('''probs = out["mrcnn_class"][0, :len(proposals)]
best = probs.argmax(axis=1)
print("classes of the first proposals:", [val_set.class_names[c] for c in best[:8]])
print("their box deltas (for the class chosen):\\n", np.round(out["mrcnn_bbox"][0, np.arange(4), best[:4]], 3))
detections = out["detections"][0]
detections = detections[detections[:, 4] > 0]  # (y1, x1, y2, x2, class, score); class 0 rows are padding
print(f"{len(detections)} detections (y1, x1, y2, x2, class, score):\\n{np.round(detections, 3)}")
print("mrcnn_mask", out["mrcnn_mask"].shape, "(one sigmoid map per class for each detection)")'''),
        new_code_cell('''r = model.detect([image])[0]
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
axes[0].imshow(image); axes[0].set_title("image")
axes[1].imshow(r["masks"].any(axis=-1) if r["masks"].size else np.zeros(image.shape[:2]), cmap="gray")
axes[1].set_title(f"{r['masks'].shape[-1]} masks (union)")
if len(detections):
    axes[2].imshow(out["mrcnn_mask"][0, 0, :, :, int(detections[0, 4])], vmin=0, vmax=1)
axes[2].set_title("first detection's 28x28 mask")
for ax in axes: ax.axis("off")
display(fig); plt.close(fig)'''),
        new_markdown_cell("## Activations and weights"),
        new_code_cell('''fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for ax, (name, value) in zip(axes, maps.items()):
    ax.imshow(value[0].mean(axis=-1)); ax.set_title(f"{name} {value.shape[1:3]} (channel mean)")
    ax.axis("off")
display(fig); plt.close(fig)'''),
        new_code_cell('''fig, axes = plt.subplots(1, 3, figsize=(9, 2.5))
for ax, name in zip(axes, ("small_stem_conv", "fpn_p2", "mrcnn_mask")):
    weights = model.find_layer(name).weights[0].numpy().ravel()  # inside backbone_fpn, mask_head
    ax.hist(weights, bins=40); ax.set_title(f"{name} ({weights.size} weights)", fontsize=9)
display(fig); plt.close(fig)'''),
    ],
}


def _drop_tf_log(output):
    if output.get("output_type") == "stream":
        output.text = "".join(line for line in output.text.splitlines(keepends=True)
                              if not line.startswith(("INFO:tensorflow", "WARNING:tensorflow")))
    return output


def build(names=None, execute=False):
    """Write the notebooks (``names``: all by default); ``execute`` runs them first."""
    for name in names or NOTEBOOKS:
        cells = [nbformat.from_dict(cell) for cell in NOTEBOOKS[name]]  # copies: outputs stay off NOTEBOOKS
        notebook = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        if execute:
            from nbclient import NotebookClient

            with tempfile.TemporaryDirectory() as run_dir:
                NotebookClient(notebook, timeout=1800, kernel_name=KERNEL_NAME,
                               resources={"metadata": {"path": run_dir}}).execute()
            for cell in notebook.cells:  # keep the results, drop TF's log noise (and its temp paths)
                if cell.cell_type == "code":
                    cell.outputs = [_drop_tf_log(o) for o in cell.outputs if o.get("name") != "stderr"]
                    cell.outputs = [o for o in cell.outputs if o.get("output_type") != "stream" or o.text]
        nbformat.write(notebook, os.path.join(HERE, name))
        print(f"wrote {name} ({os.path.getsize(os.path.join(HERE, name)) / 1e3:.0f} kB)")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    unknown = [a for a in arguments if a != "--execute" and a not in NOTEBOOKS]
    if unknown:
        sys.exit(f"unknown arguments {unknown}: give --execute and/or notebook names {sorted(NOTEBOOKS)}")
    build([a for a in arguments if a in NOTEBOOKS], execute="--execute" in arguments)
