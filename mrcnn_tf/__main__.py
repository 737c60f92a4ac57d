"""``python -m mrcnn_tf``: the same command line as ``mrcnn-tf``."""

import sys

from mrcnn_tf.cli import main

if __name__ == "__main__":
    sys.exit(main())
