"""SVD training + online pruning experiment (Yang et al. 2020) on CIFAR-10/100, Fashion-MNIST or ImageNet.

  python -m experiments.cifar_svd --config=fashion_mnist --workdir=runs/fmnist
  python -m experiments.cifar_svd --config=paper:resnet20,channel,hoyer,regularize
      --config.init_from=runs/r20/pretrain --workdir=runs/r20/regularize    (one stage; all four: paper_recipe)

  --config=NAME[:ARGS] | FILE.py[:ARGS]   a packaged config by name (--list_configs prints them) or a config file
  --config.<field>=VALUE                  override any field: --config.num_epochs=10 --config.data_dir=/data
  --workdir=DIR                           checkpoints, metrics.csv, summary.json, plots (default: runs/default)
  --list_configs                          the packaged configs: description and run time
  --describe_config=NAME                  one config's whole description: command, expected result, time
Re-running with the same --workdir resumes from its latest checkpoint; a finished run says so and changes nothing.
SIGTERM / SIGINT / SIGUSR1 save the current step and exit with code 75 (docs/reliability.md#preemption-and-resuming).
Bad input ends in one ``error:`` line. Every config field and its default: docs/experiments.md#every-config-field.

Multi-process (one command per host, docs/multihost.md): add --config.parallel=sharding and
--coordinator_address=host0:1234 --num_processes=N --process_id=i, or nothing under SLURM / Open MPI / a TPU pod
(jax.distributed detects them).
"""

from absl import app, flags

from experiments.run import cli, loop
from jaxsvd.training import distributed

# --config and --workdir are parsed per call by experiments.run.cli; these global flags by absl (cli.absl_flags).
FLAGS = flags.FLAGS
flags.DEFINE_enum("distributed", "auto", distributed.MODES,
                  "jax.distributed: auto (when the flags below are set or a cluster job is detected), on, off.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (the same on every process).")
flags.DEFINE_integer("num_processes", None, "Processes in the job.")
flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
flags.DEFINE_integer("heartbeat_timeout", 100, "Seconds without a heartbeat before a lost process ends the job.")


def run(config, workdir):
  """``loop.run`` after starting jax.distributed as the flags (or the cluster environment) say."""
  flag = lambda name: FLAGS[name].value  # noqa: E731 -- the default when main is called in-process, unparsed
  distributed.initialize(flag("distributed"), flag("coordinator_address"), flag("num_processes"), flag("process_id"),
                         heartbeat_timeout_s=flag("heartbeat_timeout"))
  return loop.run(config, workdir)


main = cli.main_for(run, "paper", "runs/default")

if __name__ == "__main__":
  app.run(main, flags_parser=cli.absl_flags)
