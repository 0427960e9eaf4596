/* How fast one pod may open flows: each new conntrack entry a pod's own egress makes (a new
 * flow, or a packet posing as one: a forged reply, a stray ACK) takes a token from the pod's
 * bucket; without one the packet drops as DROP_FLOW_BUDGET, counted for that pod. One pod
 * opening flows as fast as it can thus cannot churn the shared LRU table fast enough to
 * evict the entries other pods' quiet flows live on (bpf/README.md, "Budgets").
 *
 * Only a pod's egress pays: its flow to a pod on this node passed its own egress first, and a
 * pod on another node pays at its own node's hook. Established flows re-checked after a
 * policy change write their entry again for free. */
#pragma once

#include "lib/bucket.h"
#include "lib/maps.h"

/* By counter slot, like the event buckets (lib/events.h); a slot's next owner inherits the
 * budget left, which is harmless. */
BPF_PERCPU_ARRAY(ep_flow_bucket, struct bucket, EP_MAX);

/* 1 if the endpoint with counter slot `slot` may open another flow now. */
static __always_inline int flow_budget_take(__u32 slot)
{
    __u64 packed = cfg_get(CFG_FLOW_BUDGET);
    __u64 cost = packed & 0xffffffff;
    if (cost == 0 || slot == 0)
        return 1; /* no budget configured, or an endpoint without a slot */
    struct bucket *b = ep_flow_bucket.lookup(&slot);
    if (!b)
        return 1; /* slots are below EP_MAX: not reached */
    return bucket_take(b, bpf_ktime_get_ns(), cost, cost * (packed >> 32));
}
