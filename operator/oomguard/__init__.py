"""oomguard: group-aware, priority-driven OOM protection for Kubernetes nodes."""

__version__ = "0.1.0"
