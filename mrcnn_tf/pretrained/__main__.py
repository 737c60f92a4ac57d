"""``python -m mrcnn_tf.pretrained convert IN.pth OUT.safetensors`` (or ``OUT.npz``).

Converts a torchvision state dict once, where torch is installed, to a file
that loads without torch (``torchvision_model(name, weights=OUT)``).
"""

import argparse
import sys

from mrcnn_tf.pretrained.files import read_state_dict, write_state_dict


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mrcnn_tf.pretrained",
                                     description="Convert torchvision weights for mrcnn_tf.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="IN (.pth/.safetensors/.npz) -> OUT (.safetensors/.npz)")
    convert.add_argument("input")
    convert.add_argument("output")
    args = parser.parse_args(argv)
    try:
        state = read_state_dict(args.input)
        write_state_dict(args.output, state)
    except (OSError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(state)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
