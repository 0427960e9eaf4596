"""The pure, incremental compiler: cluster state -> identity map + per-endpoint allow tables."""

from enforcer.compiler.compiler import Compiler
from enforcer.compiler.delta import AddressMove, CompileDelta
from enforcer.compiler.write_plan import (
    FlushConntrack,
    RemoveEndpoint,
    WriteIdentity,
    WritePolicy,
    WriteStep,
    plan_writes,
    transition_policy,
)

__all__ = [
    "AddressMove",
    "CompileDelta",
    "Compiler",
    "FlushConntrack",
    "RemoveEndpoint",
    "WriteIdentity",
    "WritePolicy",
    "WriteStep",
    "plan_writes",
    "transition_policy",
]
