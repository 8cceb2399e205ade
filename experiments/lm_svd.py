"""SVD training + online pruning of a byte-level language model (``experiments.tasks.language_model``).

  python -m experiments.lm_svd --config=stdlib_lm --workdir=runs/lm
  python -m experiments.lm_svd --config=stdlib_lm --config.text_dir=/path/to/texts --workdir=runs/lm_mine
  python -m experiments.predict --workdir=runs/lm --prompt='def '          (a continuation from the checkpoint)

  --config=NAME[:ARGS] | FILE.py[:ARGS]   a packaged config by name (--list_configs prints them) or a config file
  --config.<field>=VALUE                  override any field: --config.num_epochs=10 --config.lm.d_model=256
  --workdir=DIR                           checkpoints, metrics.csv, summary.json, plots (default: runs/lm)
  --list_configs                          the packaged configs: description and run time
  --describe_config=NAME                  one config's whole description: command, expected result, time
Re-running with the same --workdir resumes from its latest checkpoint; a finished run says so and changes nothing.
SIGTERM / SIGINT / SIGUSR1 save the current step and exit with code 75 (docs/reliability.md#preemption-and-resuming).
Bad input ends in one ``error:`` line. The task, its fields and metrics: docs/language_models.md.
"""

from absl import app

from experiments.run import cli, loop

main = cli.main_for(loop.run, "stdlib_lm", "runs/lm")

if __name__ == "__main__":
  app.run(main, flags_parser=cli.absl_flags)
