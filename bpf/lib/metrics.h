/* Per-CPU packet and byte counters per interface, direction and reason (0 = forwarded).
 *
 * Forwarded packets of endpoints, the hot path, are counted in a per-CPU array row the agent
 * gives each endpoint (ep_config.counter_slot): an index, no hashing. Drops, and interfaces
 * without an endpoint, go to a hash keyed by interface, direction and reason. */
#pragma once

#include "lib/maps.h"

static __always_inline void count(struct __sk_buff *skb, __u8 dir, __u8 reason)
{
    struct counter_key k = {.ifindex = skb_ifindex(skb), .direction = dir, .reason = reason};
    struct counter_val *v = counters.lookup(&k);
    if (v) {
        v->packets += 1; /* per-CPU value: no atomics needed */
        v->bytes += skb->len;
    } else {
        struct counter_val init = {.packets = 1, .bytes = skb->len};
        counters.update(&k, &init);
    }
}

static __always_inline void count_forwarded(struct __sk_buff *skb, __u8 dir, __u32 slot)
{
    __u32 row = slot * 2 + dir;
    struct counter_val *v = slot ? fwd_counters.lookup(&row) : 0;
    if (!v) {
        count(skb, dir, REASON_FORWARDED);
        return;
    }
    v->packets += 1;
    v->bytes += skb->len;
}
