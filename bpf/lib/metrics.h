/* Per-CPU packet and byte counters per interface, direction and reason (0 = forwarded). */
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
