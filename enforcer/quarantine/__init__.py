"""Quarantine: a pod isolated completely, above every policy (ingress and egress; only its own
node's traffic, kubelet probes, still passes).

The state lives in the pod object, as the annotation `policy.enforcer.dev/quarantine` whose
value is the reason (enforcer.model.objects.QUARANTINE_ANNOTATION), so it survives agent
restarts and every tool sees it; the compiler replaces a quarantined pod's table
(enforcer.compiler.compiler.quarantined_policy).

- `api.py`: set or remove the annotation and record a Kubernetes Event on the pod, through the
  kubernetes client (`enforcer quarantine`, and the agent's automatic quarantine);
- `detector.py`: the automatic quarantine's judgement, pure: spoofed-source drops, and scans
  (denied new flows toward many distinct destinations or ports within a window);
- `auto.py`: the agent's side of it: drop events in, the pod quarantined locally at once and
  the annotation and Event written through the API behind.
"""
