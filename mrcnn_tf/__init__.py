"""mrcnn_tf: Mask R-CNN (He et al. 2017) for TensorFlow 2 / Keras 3.

Public API: ``Config``, ``MaskRCNN``, ``Dataset``, ``DataGenerator`` and
the building blocks in ``mrcnn_tf.ops`` (pure TF) and ``mrcnn_tf.layers``
(Keras layers).
"""

from mrcnn_tf.config import Config
from mrcnn_tf.data import DataGenerator, Dataset, ShapesDataset
from mrcnn_tf.export import export_saved_model
from mrcnn_tf.model import MaskRCNN

__version__ = "0.1.0"
__all__ = ["Config", "DataGenerator", "Dataset", "MaskRCNN", "ShapesDataset", "export_saved_model",
           "__version__"]
