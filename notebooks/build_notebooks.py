"""Build (and with --execute, run and save with outputs) the notebooks in this folder.

    python notebooks/build_notebooks.py --execute      # MRCNN_TINY=1 keeps it to minutes on a CPU

The notebook sources live here so they are reviewed as code; tests/test_notebooks.py
executes every committed notebook at the tiny setting.
"""

import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = '''import os
import numpy as np
import keras
from IPython.display import display
%matplotlib inline

# MRCNN_TINY=1 (set by the tests) runs everything at a tiny size in seconds.
TINY = os.environ.get("MRCNN_TINY") == "1"
keras.utils.set_random_seed(0)'''

SHAPES = '''from mrcnn_tf import MaskRCNN, DataGenerator
from mrcnn_tf.data import ShapesConfig, ShapesDataset

SIZE = 64 if TINY else 128
config = ShapesConfig(IMAGE_MIN_DIM=SIZE, IMAGE_MAX_DIM=SIZE, STEPS_PER_EPOCH=2 if TINY else 100,
                      VALIDATION_STEPS=1 if TINY else 5, DETECTION_MIN_CONFIDENCE=0.3 if TINY else 0.7,
                      **({"RPN_ANCHOR_SCALES": (8, 16, 24, 32, 48)} if TINY else {}))
train_set, val_set = ShapesDataset(), ShapesDataset()
train_set.load_shapes(8 if TINY else 500, SIZE, SIZE, seed=0)
val_set.load_shapes(4 if TINY else 50, SIZE, SIZE, seed=1)
train_set.prepare()
val_set.prepare()
model_dir = os.path.abspath("logs")'''

NOTEBOOKS = {
    "demo.ipynb": [
        new_markdown_cell("# mrcnn_tf demo\n\nLoad the model the main job trained "
                          "(`samples/shapes/train_shapes.py`), or train a quick one, then detect and draw."),
        new_code_cell(SETUP),
        new_code_cell(SHAPES),
        new_code_cell('''# The main job's checkpoint when it exists (and not in the tiny test run); else a quick training.
main_job = os.path.join("..", "outputs", "shapes", "logs")
detector = MaskRCNN("inference", config, model_dir)
try:
    assert not TINY
    detector.load_weights(MaskRCNN("inference", config, main_job).find_last())
except (AssertionError, FileNotFoundError):
    trainer = MaskRCNN("training", config, model_dir)
    trainer.train(train_set, val_set, config.LEARNING_RATE, epochs=1 if TINY else 6, layers="all", verbose=0)
    detector.load_weights(trainer.find_last())'''),
        new_code_cell('''from mrcnn_tf.visualize import display_instances

images = [val_set.load_image(i) for i in val_set.image_ids[:2]]
for image, r in zip(images, detector.detect(images)):
    print(f"{len(r['class_ids'])} instances: {[val_set.class_names[c] for c in r['class_ids']]}")
    display(display_instances(image, r["rois"], r["masks"], r["class_ids"], val_set.class_names,
                              r["scores"], figsize=(4, 4)))'''),
    ],
    "train_shapes.ipynb": [
        new_markdown_cell("# Training on shapes with `model.fit`\n\nConfig, dataset, generator, "
                          "training by stages, evaluation, pictures, export."),
        new_code_cell(SETUP),
        new_code_cell(SHAPES + "\nconfig.display()"),
        new_code_cell('''# One batch as model.fit sees it: a dict keyed like the training model's inputs.
batch = DataGenerator(train_set, config, seed=0)[0]
{name: (value.shape, value.dtype.name) for name, value in batch.items()}'''),
        new_code_cell('''model = MaskRCNN("training", config, model_dir)
print(f"{model.keras_model.count_params():,} parameters")
# Stage 1: heads (RPN, FPN, heads), stage 2: every layer. `epochs` counts across calls.
model.train(train_set, val_set, config.LEARNING_RATE, epochs=1 if TINY else 4, layers="heads", verbose=0)
history = model.train(train_set, val_set, config.LEARNING_RATE, epochs=2 if TINY else 12, layers="all",
                      verbose=0)
{name: [round(v, 3) for v in values] for name, values in history.history.items() if not name.startswith("val")}'''),
        new_code_cell('''from mrcnn_tf.evaluate import coco_evaluate, compute_mAP

detector = MaskRCNN("inference", config, model_dir)
detector.load_weights(model.find_last())
print(f"VOC mask mAP@0.5: {compute_mAP(detector, val_set):.3f}")
metrics = coco_evaluate(detector, val_set, verbose=False)
{kind: {k: round(v, 3) for k, v in values.items() if k in ("AP", "AP50", "AP75")} for kind, values in metrics.items()}'''),
        new_code_cell('''from mrcnn_tf.visualize import display_instances

image = val_set.load_image(0)
r = detector.detect([image])[0]
display(display_instances(image, r["rois"], r["masks"], r["class_ids"], val_set.class_names, r["scores"],
                          figsize=(4, 4)))'''),
        new_code_cell('''import tensorflow as tf
from mrcnn_tf import export_saved_model

path = export_saved_model(detector, os.path.abspath("export"))
served = tf.saved_model.load(path)
out = served.signatures["serving_default"](images=tf.stack([tf.io.encode_png(image)]))
print(path, {k: tuple(v.shape) for k, v in out.items()})
print("detections:", int(out["num_detections"][0]), "classes:", out["detection_classes"][0, :int(out["num_detections"][0])].numpy())'''),
    ],
    "inspect_data.ipynb": [
        new_markdown_cell("# Inspecting the data\n\nImages, masks, boxes, mini masks, resize modes, "
                          "anchors and RPN targets, augmentation."),
        new_code_cell(SETUP),
        new_code_cell(SHAPES),
        new_code_cell('''from mrcnn_tf.data import extract_bboxes
from mrcnn_tf.visualize import display_instances, display_top_masks

image_id = train_set.image_ids[0]
image = train_set.load_image(image_id)
masks, class_ids = train_set.load_mask(image_id)
boxes = extract_bboxes(masks)
print("image", image.shape, image.dtype, "| masks", masks.shape, "| classes", class_ids, "| boxes", boxes.tolist())
display(display_top_masks(image, masks, class_ids, train_set.class_names))
display(display_instances(image, boxes, masks, class_ids, train_set.class_names, figsize=(4, 4)))'''),
        new_code_cell('''from mrcnn_tf.data import expand_mask, minimize_mask

# Mini masks: each mask resized into its box (MINI_MASK_SHAPE) to save memory, and back.
mini = minimize_mask(boxes, masks, config.MINI_MASK_SHAPE)
restored = expand_mask(boxes, mini, image.shape)
iou = [(m & r).sum() / max((m | r).sum(), 1) for m, r in zip(np.moveaxis(masks, -1, 0), np.moveaxis(restored, -1, 0))]
print("mini masks", mini.shape, "| IoU after the round trip:", np.round(iou, 3))'''),
        new_code_cell('''from mrcnn_tf.data import resize_image

wide = np.concatenate([image, image], axis=1)  # a 1:2 image shows the modes' differences
for mode in ("none", "square", "pad64", "crop"):
    resized, window, scale, padding, crop = resize_image(wide, min_dim=SIZE, max_dim=SIZE, mode=mode,
                                                         rng=np.random.default_rng(0))
    print(f"{mode:7s} {wide.shape} -> {resized.shape} window={window} scale={scale:.3f} crop={crop}")'''),
        new_code_cell('''from mrcnn_tf.ops.anchors import pyramid_anchors_for_image
from mrcnn_tf.visualize import draw_boxes

batch = DataGenerator(train_set, config, shuffle=False, seed=0)[0]
anchors = pyramid_anchors_for_image((SIZE, SIZE), config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                    config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE, normalized=False)
match = batch["input_rpn_match"][0, :, 0]
print(f"{len(anchors)} anchors: {(match == 1).sum()} positive, {(match == -1).sum()} negative, rest neutral")
display(draw_boxes(image, boxes=anchors[match == 1], title="positive anchors"))'''),
        new_code_cell('''from mrcnn_tf.data.augment import default_augmentation

augment = default_augmentation()
aug_image, aug_masks = augment(image, masks, np.random.default_rng(1))
print(augment)
display(display_instances(aug_image, extract_bboxes(aug_masks), aug_masks, class_ids[:aug_masks.shape[-1]],
                          train_set.class_names, figsize=(4, 4)))'''),
    ],
    "inspect_model.ipynb": [
        new_markdown_cell("# Inspecting the model\n\nEach stage of a forward pass, from the inference "
                          "graph's named outputs: anchors and RPN scores, proposals, RoIAlign crops, "
                          "class and box refinements, detections, masks, activations, weights."),
        new_code_cell(SETUP),
        new_code_cell(SHAPES),
        new_code_cell('''trainer = MaskRCNN("training", config, model_dir)
trainer.train(train_set, val_set, config.LEARNING_RATE, epochs=1 if TINY else 6, layers="all", verbose=0)
model = MaskRCNN("inference", config, model_dir)
model.load_weights(trainer.find_last())

from mrcnn_tf.model.inference import mold_inputs
image = val_set.load_image(0)
molded, metas, windows = mold_inputs([image], config)
out = model.keras_model.predict({"input_image": molded, "input_image_meta": metas}, verbose=0)
{name: value.shape for name, value in out.items()}'''),
        new_code_cell('''from mrcnn_tf.visualize import draw_boxes

scale = np.array([SIZE] * 4)
scores = out["rpn_class"][0, :, 1]
top = np.argsort(-scores)[:10]
print("top RPN scores:", np.round(scores[top], 3))
display(draw_boxes(image, boxes=out["anchors"][0, top] * scale, title="top-scoring anchors"))
proposals = out["rpn_rois"][0]
proposals = proposals[np.any(proposals != 0, axis=1)]
print(f"{len(proposals)} proposals after NMS (of {len(scores)} anchors)")
display(draw_boxes(image, boxes=proposals[:20] * scale, title="first 20 proposals"))'''),
        new_code_cell('''import tensorflow as tf
from mrcnn_tf.ops import roi_align

# RoIAlign by hand on P2 (stride 4): the first proposals, 7x7 bins, mean over channels.
p2_model = keras.Model(model.keras_model.input["input_image"], model.keras_model.get_layer("fpn_p2").output)
p2 = p2_model.predict(molded, verbose=0)
crops = roi_align(p2, proposals[:4] * SIZE / 4.0, tf.zeros(4, tf.int32), 7).numpy()
print("P2", p2.shape, "-> crops", crops.shape)
print(np.round(crops[0].mean(axis=-1), 2))'''),
        new_code_cell('''probs = out["mrcnn_class"][0]
best = probs[:len(proposals)].argmax(axis=1)
print("class of the first proposals:", [val_set.class_names[c] for c in best[:8]])
print("their box deltas (class chosen):", np.round(out["mrcnn_bbox"][0, np.arange(4), best[:4]], 3))
detections = out["detections"][0]
detections = detections[detections[:, 5] > 0]
print(f"{len(detections)} detections (y1, x1, y2, x2, class, score):\\n{np.round(detections, 3)}")'''),
        new_code_cell('''import matplotlib.pyplot as plt

r = model.detect([image])[0]
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
axes[0].imshow(image); axes[0].set_title("image")
axes[1].imshow(r["masks"].any(axis=-1) if r["masks"].size else np.zeros(image.shape[:2])); axes[1].set_title("masks")
axes[2].imshow(p2[0].mean(axis=-1)); axes[2].set_title("P2 activation (mean)")
for ax in axes: ax.axis("off")
display(fig); plt.close(fig)'''),
        new_code_cell('''fig, axes = plt.subplots(1, 3, figsize=(9, 2.5))
for ax, name in zip(axes, ("small_stem_conv", "fpn_p2", "mrcnn_mask")):
    weights = model.keras_model.get_layer(name).weights[0].numpy().ravel()
    ax.hist(weights, bins=40); ax.set_title(f"{name} ({weights.size} weights)")
display(fig); plt.close(fig)'''),
    ],
}


def build(execute=False):
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                      "language": "python"}})
        if execute:
            from nbclient import NotebookClient
            run_dir = os.path.join(HERE, ".run")
            os.makedirs(run_dir, exist_ok=True)
            NotebookClient(notebook, timeout=1200, kernel_name="python3",
                           resources={"metadata": {"path": run_dir}}).execute()
            for cell in notebook.cells:  # keep results, drop TF's start-up log noise
                cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]
        nbformat.write(notebook, os.path.join(HERE, name))
        print("wrote", name)


if __name__ == "__main__":
    build(execute="--execute" in sys.argv)
