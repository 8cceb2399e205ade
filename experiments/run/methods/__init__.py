"""The pruning methods a run knows, one module each, every one an ``events.Event`` type registered by name:

  rank       ``RankPrune``: online and final SVD rank pruning
  slimming   ``Slimming``: network slimming (channels of smallest |γ| removed, the model rebuilt narrower)
  masking    ``MaskPrune``: unstructured magnitude / dynamic masks at a parameter count
  narrow     ``Narrow``: uniformly narrower widths at initialization (it never fires)

``experiments.run.events.types()`` imports every module of this package by name; nothing else imports them, so a new
method is one new module here (docs/design.md#adding-an-event-type).
"""
