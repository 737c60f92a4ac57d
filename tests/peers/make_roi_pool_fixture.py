"""Write tests/peers/roi_pool_torchvision.npz: torchvision.ops.roi_pool on random maps and boxes.

Run with torch and torchvision installed (made with torch 2.14.1, torchvision
0.29.1, CPU); CI only reads the .npz:

    python tests/peers/make_roi_pool_fixture.py

Boxes are stored in mrcnn_tf's frame, (y1, x1, y2, x2) in map pixels with y2/x2
exclusive; torchvision gets (b, x1, y1, x2 - 1, y2 - 1) and spatial_scale 1.
Stored per output size: the pooled maps (NHWC) and the gradient of
sum(pooled * weights) with respect to the map.
"""

import os

import numpy as np
import torch
import torchvision

OUTPUT_SIZES = ((2, 2), (7, 7), (3, 5))
HERE = os.path.dirname(os.path.abspath(__file__))


def random_boxes(rng, count, height, width):
    """Boxes of every kind: inside, across borders, outside, sub-pixel, zero size, on halves."""
    rows = []
    for k in range(count):
        kind = k % 6
        if kind == 0:    # inside
            y1, x1 = rng.uniform(0, height - 2), rng.uniform(0, width - 2)
            y2, x2 = rng.uniform(y1 + 1, height), rng.uniform(x1 + 1, width)
        elif kind == 1:  # across the borders
            y1, x1 = rng.uniform(-3, 1), rng.uniform(-3, 1)
            y2, x2 = rng.uniform(height - 1, height + 3), rng.uniform(width - 1, width + 3)
        elif kind == 2:  # partly or fully outside
            y1, x1 = rng.uniform(-8, height + 4), rng.uniform(-8, width + 4)
            y2, x2 = y1 + rng.uniform(0, 6), x1 + rng.uniform(0, 6)
        elif kind == 3:  # sub-pixel
            y1, x1 = rng.uniform(-1, height), rng.uniform(-1, width)
            y2, x2 = y1 + rng.uniform(0, 1), x1 + rng.uniform(0, 1)
        elif kind == 4:  # zero size
            y1, x1 = rng.uniform(0, height), rng.uniform(0, width)
            y2, x2 = y1, x1
        else:            # coordinates on halves (C's round: away from zero), some negative
            y1, x1 = rng.integers(-3, height) + 0.5, rng.integers(-3, width) + 0.5
            y2, x2 = y1 + rng.integers(0, 8), x1 + rng.integers(0, 8)
        rows.append((y1, x1, y2, x2))
    return np.array(rows, np.float32)


def main():
    rng = np.random.default_rng(20)
    batch, height, width, channels = 2, 9, 11, 3
    # Distinct values (a permutation), so the max and its gradient cell are unique.
    features = rng.permutation(batch * height * width * channels).astype(np.float32)
    features = (features / features.size - 0.5).reshape(batch, height, width, channels)
    boxes = random_boxes(rng, 48, height, width)
    box_indices = rng.integers(0, batch, len(boxes)).astype(np.int32)
    out = {"features": features, "boxes": boxes, "box_indices": box_indices,
           "output_sizes": np.array(OUTPUT_SIZES, np.int32),
           "versions": np.array([torch.__version__, torchvision.__version__])}
    tv_boxes = torch.tensor(np.stack([box_indices.astype(np.float32), boxes[:, 1], boxes[:, 0],
                                      boxes[:, 3] - 1, boxes[:, 2] - 1], axis=1))
    for oh, ow in OUTPUT_SIZES:
        nchw = torch.tensor(features.transpose(0, 3, 1, 2), requires_grad=True)
        pooled = torchvision.ops.roi_pool(nchw, tv_boxes, (oh, ow), spatial_scale=1.0)
        weights = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
        (pooled * torch.tensor(weights)).sum().backward()
        key = f"{oh}x{ow}"
        out[f"pooled_{key}"] = pooled.detach().numpy().transpose(0, 2, 3, 1)
        out[f"weights_{key}"] = weights.transpose(0, 2, 3, 1)
        out[f"grad_{key}"] = nchw.grad.numpy().transpose(0, 2, 3, 1)
    path = os.path.join(HERE, "roi_pool_torchvision.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
