"""SVD training + online pruning experiment (Yang et al. 2020) on CIFAR-10/100 or Fashion-MNIST.

  python -m experiments.cifar_svd --config=experiments/configs/resnet20_channel_hoyer.py --workdir=runs/r20
  python -m experiments.cifar_svd --config=experiments/configs/fashion_mnist.py --workdir=runs/fmnist
Override any field: --config.num_epochs=10 --config.svd.decomposition=spatial --config.data_dir=/data.
Re-running with the same --workdir resumes from its latest checkpoint.

Multi-process (one command per host, README "Multi-host training"): add --config.parallel=sharding and
--coordinator_address=host0:1234 --num_processes=N --process_id=i, or nothing under SLURM / Open MPI / a TPU pod
(jax.distributed detects them).
"""

from absl import app, flags
from ml_collections import config_flags

from experiments import reporting, train
from jaxsvd import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "experiments/configs/resnet20_channel_hoyer.py",
                                "Experiment config file (get_config()).", lock_config=True)
flags.DEFINE_string("workdir", "runs/default", "Directory for checkpoints, metrics, plots and exports.")
flags.DEFINE_enum("distributed", "auto", distributed.MODES,
                  "jax.distributed: auto (when the flags below are set or a cluster job is detected), on, off.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (the same on every process).")
flags.DEFINE_integer("num_processes", None, "Processes in the job.")
flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
flags.DEFINE_integer("heartbeat_timeout", 100, "Seconds without a heartbeat before a lost process ends the job.")


def run(config, workdir):
  """``train.run`` after starting jax.distributed as the flags (or the cluster environment) say."""
  distributed.initialize(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                         heartbeat_timeout_s=FLAGS.heartbeat_timeout)
  return train.run(config, workdir)


main = reporting.cli_main(run)

if __name__ == "__main__":
  app.run(main)
