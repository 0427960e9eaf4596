/* A per-CPU memory of the flows the conntrack fast path passed last, so the next packet of
 * one of them passes without the conntrack lookup: hashing a 48-byte key and walking its
 * bucket is about a third of the program's cost on an established flow (bpf/README.md,
 * "Where a TCP stream's cost goes").
 *
 * A hit gives the verdict the lookup would give. A flow is remembered only when the lookup
 * found its entry current (checked under the policy epoch now in force), and trusted only
 * while that epoch lasts. Everything that deletes entries from outside the program (the
 * agent's conntrack flush, an endpoint's removal) bumps the epoch. Under one epoch an
 * entry changes only
 * - when a TCP SYN opens a connection the other way round: a SYN always takes the lookup, the
 *   one packet whose verdict depends on the entry's orientation (lib/conntrack.h);
 * - when the LRU evicts it: every FLOW_CACHE_RECHECK-th packet of a flow takes the lookup, so
 *   the LRU keeps seeing the flow as alive, and an evicted flow is back under the lookup within
 *   that many packets (until then it keeps the verdict it had under this epoch);
 * - when the Services check after DNAT forgets a deferred entry (lib/services.h): its flow
 *   passes its source hook either way, to be judged at the destination.
 * A slot is chosen by the interface and the ports; a collision only costs a lookup.
 * FLOW_CACHE_SLOTS=0 compiles the cache out (to measure it: bench/variants.py). */
#pragma once

#include "lib/conntrack.h"

#ifndef FLOW_CACHE_SLOTS
#define FLOW_CACHE_SLOTS 64 /* a power of two */
#endif
#define FLOW_CACHE_RECHECK 64 /* a power of two */

#if FLOW_CACHE_SLOTS > 0
struct flow_memo {
    struct ct_key key;
    __u64 epoch;         /* the epoch the entry was found current under */
    __u32 counter_slot;  /* the entry's counter row */
    __u32 hits;
};
/* Per CPU and not pinned: a new program starts with an empty memory (a zero key, which no
 * packet's key equals: its family is 4 or 6). */
BPF_PERCPU_ARRAY(flow_cache, struct flow_memo, FLOW_CACHE_SLOTS);

struct flow_probe {
    struct ct_key key;
    struct flow_memo *memo; /* the slot: to fill when the lookup finds the entry current */
};

static __always_inline int ct_keys_equal(const struct ct_key *a, const struct ct_key *b)
{
    const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
    _Static_assert(sizeof(struct ct_key) == 48, "compared as six words");
    return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4] &&
           x[5] == y[5];
}

/* 1 when the packet's flow was passed under `epoch` on this CPU lately (*counter_slot: its
 * row). Else 0, with probe->memo set when the lookup's answer may be remembered. */
static __always_inline int flow_cache_hit(const struct pkt *p, __u32 ifindex, __u8 dir,
                                          __u64 epoch, struct flow_probe *probe,
                                          __u32 *counter_slot)
{
    probe->memo = 0;
    if (p->icmp_error || (p->flow.proto == IPPROTO_TCP && (p->tcp_flags & 0x02)))
        return 0;
    ct_key_init(&probe->key, &p->flow, ifindex, dir);
    /* Ports xor'd: both orientations of a flow share the slot, as they share the entry. */
    __u32 index = (ifindex ^ probe->key.flow.sport ^ probe->key.flow.dport) &
                  (FLOW_CACHE_SLOTS - 1);
    struct flow_memo *m = flow_cache.lookup(&index);
    if (!m)
        return 0;
    probe->memo = m;
    if (m->epoch != epoch || !ct_keys_equal(&m->key, &probe->key))
        return 0;
    if ((++m->hits & (FLOW_CACHE_RECHECK - 1)) == 0)
        return 0; /* this one takes the lookup (and refills the slot) */
    *counter_slot = m->counter_slot;
    return 1;
}

/* The lookup found the flow's entry current under `epoch`: remember it. */
static __always_inline void flow_cache_fill(const struct flow_probe *probe, __u64 epoch,
                                            __u32 counter_slot)
{
    struct flow_memo *m = probe->memo;
    if (!m)
        return;
    __builtin_memcpy(&m->key, &probe->key, sizeof(m->key));
    m->epoch = epoch;
    m->counter_slot = counter_slot;
}
#endif
