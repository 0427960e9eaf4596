"""Least-privilege NetworkPolicies from observed flows (`enforcer advise`). Pure."""

from enforcer.advise.advice import Advice, AdviceError, AdviseOptions, advise
from enforcer.advise.policies import Prefixes

__all__ = ["Advice", "AdviceError", "AdviseOptions", "Prefixes", "advise"]
