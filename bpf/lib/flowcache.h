/* A per-CPU memory of the flows the conntrack fast path passed last, so the next packet of
 * one of them passes without the parse or the conntrack lookup: hashing a 48-byte key and
 * walking its bucket is about a third of the program's cost on an established flow, the parse
 * most of the rest (bpf/README.md, "Where a TCP stream's cost goes", "Where a flow's time
 * goes").
 *
 * A hit gives the verdict the lookup would give. A flow is remembered only when the lookup
 * found its entry current (checked under the policy epoch now in force) or the program has
 * just written it, and trusted only while that epoch lasts. Everything that deletes entries
 * from outside the program (the agent's conntrack flush, an endpoint's removal) bumps the
 * epoch. Under one epoch an entry changes only
 * - when a TCP SYN opens a connection the other way round: a SYN without ACK always takes
 *   the lookup, the one packet whose verdict depends on the entry's orientation
 *   (lib/conntrack.h);
 * - when the LRU evicts it: every FLOW_CACHE_RECHECK-th packet of a flow takes the lookup, so
 *   the LRU keeps seeing the flow as alive, and an evicted flow is back under the lookup within
 *   that many packets (until then it keeps the verdict it had under this epoch);
 * - when the Services check after DNAT forgets a deferred entry (lib/services.h): its flow
 *   passes its source hook either way, to be judged at the destination.
 * The probe reads the packet itself, before the parser (flow_cache_probe): only the simple
 * packets it can judge as the parser would, every length checked the same way.
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
 * packet's key equals: its family is 4 or 6). One slot more than a probe chooses from: the
 * sink, which packets the probe does not read get (see flow_cache_probe). */
#define FLOW_CACHE_SINK FLOW_CACHE_SLOTS
BPF_PERCPU_ARRAY(flow_cache, struct flow_memo, FLOW_CACHE_SLOTS + 1);

static __always_inline int ct_keys_equal(const struct ct_key *a, const struct ct_key *b)
{
    const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
    _Static_assert(sizeof(struct ct_key) == 48, "compared as six words");
    return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4] &&
           x[5] == y[5];
}

/* The packet's bytes at `off`, straight from the linear data (the probe reads nothing else). */
#define PROBE_AT(data, off, type) (*(const type *)((const __u8 *)(data) + (off)))

/* Probed before the full parse (lib/parse.h), straight from the linear packet data: IPv4
 * without options or IPv6 without extension headers, TCP or UDP, not a fragment, each length
 * checked as the parser checks it. Such a packet the parser reads as the same tuple, and
 * accepts; anything else is not probed here (returns 0, *memo unset) and takes the parse
 * and the conntrack lookup. A TCP SYN without ACK is probed but never passed: it always
 * takes the lookup, and its memo is filled if its flow's entry is written.
 * Returns 1 when the flow was passed under `epoch` on this CPU lately (*counter_slot: its row);
 * else 0, with *memo set when the lookup's answer (or the new entry) may be remembered. */
static __always_inline int flow_cache_probe(struct __sk_buff *skb, __u32 ifindex, __u8 dir,
                                            __u64 epoch, struct flow_memo **memo,
                                            __u32 *counter_slot)
{
    /* *memo is never null, so the verifier walks the rest of the program once, not once
     * with and once without a slot: a packet not probed gets the sink, which no probe ever
     * reads (its array key is constant: the verifier knows the lookup cannot fail). */
    __u32 sink = FLOW_CACHE_SINK;
    struct flow_memo *none = flow_cache.lookup(&sink);
    if (!none)
        return 0; /* not reached */
    *memo = none;
    if (skb->vlan_present)
        return 0;
    void *data, *end;
    /* Loaded from the context itself (see skb_ifindex, lib/common.h). */
    asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(data) : "r"(skb),
                 "i"(__builtin_offsetof(struct __sk_buff, data)));
    asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(end) : "r"(skb),
                 "i"(__builtin_offsetof(struct __sk_buff, data_end)));
    /* The tuple is read into the key itself, then put in canonical order (ct_key_init's).
     * Aligned for the 8-byte stores below: the verifier refuses a misaligned stack access, and
     * the key's own alignment (4) would leave that to where the compiler happens to put it. */
    struct ct_key key __attribute__((aligned(8))) = {};
    struct flow *f = &key.flow;
    __u32 l4, l3_end;
    if (data + 34 > end)
        return 0; /* not even Ethernet and an IPv4 header linear */
    __u16 ethertype = PROBE_AT(data, 12, __u16);
    if (ethertype == bpf_htons(ETH_P_IP_)) {
        /* Version 4, 20-byte header; not a fragment (DF alone is fine). */
        if (PROBE_AT(data, 14, __u8) != 0x45 ||
            (PROBE_AT(data, 20, __u16) & bpf_htons(0x3fff)))
            return 0;
        __u32 total = bpf_ntohs(PROBE_AT(data, 16, __u16));
        if (total < 20 || 14 + total > skb->len)
            return 0;
        f->family = 4;
        f->proto = PROBE_AT(data, 23, __u8);
        *(__u32 *)f->saddr = PROBE_AT(data, 26, __u32);
        *(__u32 *)f->daddr = PROBE_AT(data, 30, __u32);
        l4 = 34;
        l3_end = 14 + total;
    } else if (ethertype == bpf_htons(ETH_P_IPV6_)) {
        if (data + 54 > end)
            return 0;
        __u32 payload = bpf_ntohs(PROBE_AT(data, 18, __u16));
        if ((PROBE_AT(data, 14, __u8) >> 4) != 6 || payload == 0 || 54 + payload > skb->len)
            return 0;
        f->family = 6;
        f->proto = PROBE_AT(data, 20, __u8); /* TCP or UDP right after: no extension headers */
        *(__u64 *)f->saddr = PROBE_AT(data, 22, __u64);
        *(__u64 *)(f->saddr + 8) = PROBE_AT(data, 30, __u64);
        *(__u64 *)f->daddr = PROBE_AT(data, 38, __u64);
        *(__u64 *)(f->daddr + 8) = PROBE_AT(data, 46, __u64);
        l4 = 54;
        l3_end = 54 + payload;
    } else {
        return 0;
    }
    int opens = 0;
    if (f->proto == IPPROTO_TCP) {
        if (data + l4 + 20 > end)
            return 0;
        __u32 doff = (PROBE_AT(data, l4 + 12, __u8) >> 4) * 4;
        if (l4 + 20 > l3_end || doff < 20 || l4 + doff > l3_end)
            return 0;
        opens = (PROBE_AT(data, l4 + 13, __u8) & 0x12) == 0x02;
    } else if (f->proto == IPPROTO_UDP) {
        if (data + l4 + 8 > end)
            return 0;
        __u32 length = bpf_ntohs(PROBE_AT(data, l4 + 4, __u16));
        if (l4 + 8 > l3_end || length < 8 || l4 + length > l3_end)
            return 0;
    } else {
        return 0;
    }
    f->sport = PROBE_AT(data, l4, __be16);
    f->dport = PROBE_AT(data, l4 + 2, __be16);
    int swapped = flow_swapped(f);
    if (swapped)
        flow_swap(f);
    key.ifindex = ifindex;
    key.direction = dir ^ swapped;
    /* Ports xor'd: both orientations of a flow share the slot, as they share the entry. */
    __u32 index = (ifindex ^ key.flow.sport ^ key.flow.dport) &
                  (FLOW_CACHE_SLOTS - 1);
    struct flow_memo *m = flow_cache.lookup(&index);
    if (!m)
        return 0; /* not reached: index < FLOW_CACHE_SLOTS */
    *memo = m;
    if (opens || m->epoch != epoch || !ct_keys_equal(&m->key, &key))
        return 0;
    if ((++m->hits & (FLOW_CACHE_RECHECK - 1)) == 0)
        return 0; /* this one takes the lookup (and refills the slot) */
    *counter_slot = m->counter_slot;
    return 1;
}

/* The lookup found the flow's entry current under `epoch`, or wrote it: remember it in the
 * slot the probe chose (the key written straight into the slot: no second key on the stack). */
static __always_inline void flow_cache_fill(struct flow_memo *m, const struct flow *f,
                                            __u32 ifindex, __u8 dir, __u64 epoch,
                                            __u32 counter_slot)
{
    ct_key_init(&m->key, f, ifindex, dir);
    m->epoch = epoch;
    m->counter_slot = counter_slot;
}
#endif
