"""Data: offline TFDS builders, per-task preprocessing and the tf.data pipeline.

This module itself imports nothing heavy, so `jaxdl datasets` answers without loading TensorFlow.
"""
import os
from pathlib import Path

# Before TensorFlow loads: oneDNN's custom ops reorder float arithmetic ("slightly different numerical results"),
# which reproducible preprocessing does not want, and TF's C++ start-up banner says nothing a user needs.
# setdefault: a user who wants either back sets the variable.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Built-in datasets: prepared offline on first use by the builders in jaxdl.data.builders.
BUILTIN_DATASETS = {
    'digits': "scikit-learn's 8x8 handwritten digits: 1,797 images, 10 classes (70/10/20 seeded split)",
    'rotated_digits': 'the digits on 28x28, rotated by a seeded angle in [-45, 45] degrees (regression: angle)',
    'shapes': '64x64 scenes of 1-4 circles, squares, triangles (segmentation masks, detection boxes)',
}
# Catalog datasets whose features the classification preprocessing reads as is (image + label). They are
# never downloaded at run time: prepare them with `tfds build NAME --data_dir DIR` on a machine with internet.
CATALOG_CLASSIFICATION = ('mnist', 'fashion_mnist', 'cifar10', 'cifar100', 'kmnist', 'emnist', 'svhn_cropped')
# Catalog datasets the segmentation and detection adapters read (jaxdl.data.adapters); same rule: never downloaded.
CATALOG_SEGMENTATION = ('oxford_iiit_pet',)
CATALOG_DETECTION = ('voc', 'coco')


def resolve_data_dir(data_dir: str = '') -> str:
    return data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')


def prepared_versions(name: str, data_dir: str = '') -> list[str]:
    """Versions of `name` prepared under the data dir (read from disk, without TensorFlow)."""
    root = Path(resolve_data_dir(data_dir)) / name
    return sorted(p.parent.name for p in root.glob('*/dataset_info.json')) if root.is_dir() else []
