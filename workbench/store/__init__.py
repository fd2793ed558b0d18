"""The run folder on disk: results and their logs, growth, columns, A1111 infotext, shipped tables. No torch.

Modules are imported when used; nothing heavy is imported here."""
