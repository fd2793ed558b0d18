"""Results tables as pictures, statistics, an HTML report and tracker exports.

Modules are imported when used; nothing heavy is imported here."""
