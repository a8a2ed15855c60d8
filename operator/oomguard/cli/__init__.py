"""The `oomguard` command (and `kubectl oomguard`), its output for people, and the demo."""

from oomguard.cli.commands import kubectl_plugin, main, parser

__all__ = ["kubectl_plugin", "main", "parser"]
