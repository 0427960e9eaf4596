"""A Kubernetes NetworkPolicy enforcer: exact semantics, eBPF on TC, any CNI."""

__version__ = "0.1.0"
