"""SVD training + online pruning experiment (Yang et al. 2020) on CIFAR-10/100 or Fashion-MNIST.

  python -m experiments.cifar_svd --config=experiments/configs/resnet20_channel_hoyer.py --workdir=runs/r20
  python -m experiments.cifar_svd --config=experiments/configs/fashion_mnist.py --workdir=runs/fmnist
Override any field: --config.num_epochs=10 --config.svd.decomposition=spatial --config.data_dir=/data.
Re-running with the same --workdir resumes from its latest checkpoint.
"""

from absl import app, flags
from ml_collections import config_flags

from experiments import reporting, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "experiments/configs/resnet20_channel_hoyer.py",
                                "Experiment config file (get_config()).", lock_config=True)
flags.DEFINE_string("workdir", "runs/default", "Directory for checkpoints, metrics, plots and exports.")


main = reporting.cli_main(train.run)

if __name__ == "__main__":
  app.run(main)
