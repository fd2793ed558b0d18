"""One batch of trials -> images and rows: the sweep, generation, the engine's own denoising loop, scoring.

Modules are imported when used; nothing heavy is imported here."""
