"""mrcnn_tf: Mask R-CNN for TensorFlow 2 / Keras 3."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = [line.strip() for line in (HERE / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

# Optional runtimes; versions tested beside tensorflow 2.21 / keras 3.15 / numpy 2.4.
RUNTIME_EXTRAS = {
    "tflite": ["ai-edge-litert>=2.3"],
    "onnx": ["tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20"],
    # apache-beam 2.77 pins protobuf < 7: pip installs protobuf 6.33 with it, which
    # TensorFlow 2.21 accepts (the tests run in that environment).
    "beam": ["apache-beam>=2.77"],
}
TEST_REQUIREMENTS = [
    "pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "nbclient>=0.10", "nbformat>=5.10",
    "ipykernel>=6.29",
    "safetensors>=0.4",  # tests/test_pretrained_files.py checks our reader/writer against it
    # The export and Beam tests run every runtime the package supports.
    *(package for packages in RUNTIME_EXTRAS.values() for package in packages),
]

setup(
    name="mrcnn_tf",
    version="0.1.0",
    description="Mask R-CNN instance segmentation for TensorFlow 2 / Keras 3: train with model.fit, "
                "serve with TF Serving.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["mrcnn_tf", "mrcnn_tf.*"]),
    install_requires=REQUIREMENTS,
    extras_require={**RUNTIME_EXTRAS, "test": TEST_REQUIREMENTS},
    entry_points={"console_scripts": ["mrcnn-tf=mrcnn_tf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
        "Programming Language :: Python :: 3 :: Only",
    ],
)
