"""Experiments built from sweeps: adaptive search, rank studies, LoRA blends.

Modules are imported when used; nothing heavy is imported here."""
