"""The toy world: a small SD + ControlNet model trained on coloured shapes, shipped with workbench."""
