"""The kernel side: bcc-compiled TC program, pinned maps, attach, and typed map writes.

    dp = Datapath.open(pin_root, DatapathConfig())   # compile once; adopt pins (layout checked)
    dp.attach(ifindex)                               # both hooks; idempotent, replaces in place
    dp.add_local_endpoints({ip: (endpoint_id, ifindex)})  # its addresses, before its policy
    gen = dp.set_endpoint(ifindex, endpoint_id, policy)  # one atomic generation (MapFullError)
    dp.set_identities({prefix: identity_or_None})    # ipcache; re-checks established flows
    dp.flush_conntrack(ip)                           # an IP changed owner
    dp.counters(); dp.poll_events(ms, cb); dp.endpoints(); dp.identities(); dp.map_pressure()
    dp.close()                                       # releases fds; never detaches

One Datapath per node network namespace: endpoint config is keyed by ifindex, which is only
unique within a namespace. See bpf/README.md for the program and map layout.
"""

from enforcer.datapath.layout import DEFAULT_PIN_ROOT, DatapathConfig, LayoutMismatchError
from enforcer.datapath.writer import Datapath, MapFullError

__all__ = ["DEFAULT_PIN_ROOT", "Datapath", "DatapathConfig", "LayoutMismatchError",
           "MapFullError"]
