"""What the workshop touches: lessons, the demo, student copies, the panel, looking inside a model.

Modules are imported when used; nothing heavy is imported here."""
