"""The task-agnostic run: validated plan, events, the loop, the epoch, recovery, preemption, preflight, start-up,
outputs and the command-line plumbing."""
