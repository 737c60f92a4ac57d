"""mrcnn_tf: Mask R-CNN for TensorFlow 2 / Keras 3."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = [line.strip() for line in (HERE / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

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
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "nbclient>=0.10", "nbformat>=5.10",
                 "ipykernel>=6.29"],
    },
    entry_points={"console_scripts": ["mrcnn-tf=mrcnn_tf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
        "Programming Language :: Python :: 3 :: Only",
    ],
)
