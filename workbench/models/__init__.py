"""Weights and how to call them: loading a pipeline, profiles, devices and memory, speed, fingerprints,
checkpoints, control images.

Modules are imported when used; nothing heavy is imported here."""
