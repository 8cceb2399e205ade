"""Input data: in-memory datasets (Fashion-MNIST IDX, CIFAR archives, tfds), batches, and the streaming pipeline.

  datasets        ``load_dataset``, ``Dataset``, normalization, ``train_batches`` / ``eval_batches`` (re-exported here)
  cifar_archives  the CIFAR-10/100 binary and python archives, read without TensorFlow
  downloads       Fashion-MNIST's official files downloaded on first use into a cache folder, verified (stdlib only)
  image_ops       decode, crops, flips (numpy + Pillow) for the streaming pipeline
  text            byte-level text corpora for language models: a folder of text files, split by file, packed
  streaming       grain pipelines: ImageFolder / tfds / array sources, checkpointable, sharded per process
  tfds_io         tensorflow-datasets access, imported only for ``data_source='tfds'``

``streaming`` (grain) and ``tfds_io`` (tensorflow-datasets) are imported only where used:
``from jaxsvd.data import streaming``.
"""

from jaxsvd.data import cifar_archives as cifar_archives
from jaxsvd.data import datasets as datasets
from jaxsvd.data import downloads as downloads
from jaxsvd.data import image_ops as image_ops
from jaxsvd.data import text as text
from jaxsvd.data.datasets import DATASETS as DATASETS
from jaxsvd.data.datasets import FASHION_FILES as FASHION_FILES
from jaxsvd.data.datasets import FASHION_MNIST_DIRS as FASHION_MNIST_DIRS
from jaxsvd.data.datasets import FIXED_NORMALIZATION as FIXED_NORMALIZATION
from jaxsvd.data.datasets import NORMALIZATIONS as NORMALIZATIONS
from jaxsvd.data.datasets import NUM_CLASSES as NUM_CLASSES
from jaxsvd.data.datasets import SOURCES as SOURCES
from jaxsvd.data.datasets import STREAMED as STREAMED
from jaxsvd.data.datasets import TFDS_MODULE as TFDS_MODULE
from jaxsvd.data.datasets import Dataset as Dataset
from jaxsvd.data.datasets import check_data_dir as check_data_dir
from jaxsvd.data.datasets import dataset_normalization as dataset_normalization
from jaxsvd.data.datasets import eval_batches as eval_batches
from jaxsvd.data.datasets import load_cifar_local as load_cifar_local
from jaxsvd.data.datasets import load_dataset as load_dataset
from jaxsvd.data.datasets import load_fashion_mnist as load_fashion_mnist
from jaxsvd.data.datasets import load_tfds as load_tfds
from jaxsvd.data.datasets import load_tfds_module as load_tfds_module
from jaxsvd.data.datasets import normalization as normalization
from jaxsvd.data.datasets import num_train_batches as num_train_batches
from jaxsvd.data.datasets import read_idx as read_idx
from jaxsvd.data.datasets import train_batches as train_batches
from jaxsvd.data.image_ops import random_crop_flip as random_crop_flip

__all__ = ["DATASETS", "Dataset", "FASHION_FILES", "FASHION_MNIST_DIRS", "FIXED_NORMALIZATION", "NORMALIZATIONS",
           "NUM_CLASSES", "SOURCES", "STREAMED", "TFDS_MODULE", "check_data_dir", "dataset_normalization",
           "eval_batches", "load_cifar_local", "load_dataset", "load_fashion_mnist", "load_tfds", "load_tfds_module",
           "normalization", "num_train_batches", "random_crop_flip", "read_idx", "train_batches", "cifar_archives",
           "datasets", "downloads", "image_ops", "text"]
