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
 * packets it can judge as the parser would, every length checked the same way. What it reads
 * but does not remember (a connection's SYN, a flow's first datagram) it hands on parsed.
 * A slot is chosen by the interface and the ports; a collision only costs a lookup.
 * FLOW_CACHE_SLOTS=0 compiles the cache out (to measure it: bench/variants.py). */
#pragma once

#include "lib/conntrack.h"

#ifndef FLOW_CACHE_SLOTS
#define FLOW_CACHE_SLOTS 64 /* a power of two */
#endif
#define FLOW_CACHE_RECHECK 64 /* a power of two */

#define PROBE_UNREAD 0 /* not a packet the probe reads: *p untouched, for the parser */
#define PROBE_READ 1   /* read into *p exactly as the parser reads it; not remembered */
#define PROBE_HIT 2    /* remembered under this epoch: passes (*p untouched) */

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
 * accepts; anything else is not probed here (PROBE_UNREAD) and takes the parse and the
 * conntrack lookup. A packet probed but not remembered (PROBE_READ) needs no parse: *p holds
 * what the parser would have written (a new flow's SYN, its cost cut by the parse's; in a
 * connection that is the one packet that still gets here). A TCP SYN without ACK is probed
 * but never passed: it always takes the lookup, and its memo is filled if its flow's entry is
 * written. PROBE_HIT when the flow was passed under `epoch` on this CPU lately (*counter_slot:
 * its row); *memo is set when the lookup's answer (or the new entry) may be remembered. */
static __always_inline int flow_cache_probe(struct __sk_buff *skb, __u32 ifindex, __u8 dir,
                                            __u64 epoch, struct pkt *p,
                                            struct flow_memo **memo, __u32 *counter_slot)
{
    /* *memo is never null, so the verifier walks the rest of the program once, not once
     * with and once without a slot: a packet not probed gets the sink, which no probe ever
     * reads (its array key is constant: the verifier knows the lookup cannot fail). */
    __u32 sink = FLOW_CACHE_SINK;
    struct flow_memo *none = flow_cache.lookup(&sink);
    if (!none)
        return PROBE_UNREAD; /* not reached */
    *memo = none;
    if (skb->vlan_present)
        return PROBE_UNREAD;
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
        return PROBE_UNREAD; /* not even Ethernet and an IPv4 header linear */
    __u16 ethertype = PROBE_AT(data, 12, __u16);
    if (ethertype == bpf_htons(ETH_P_IP_)) {
        /* Version 4, 20-byte header; not a fragment (DF alone is fine). */
        if (PROBE_AT(data, 14, __u8) != 0x45 ||
            (PROBE_AT(data, 20, __u16) & bpf_htons(0x3fff)))
            return PROBE_UNREAD;
        __u32 total = bpf_ntohs(PROBE_AT(data, 16, __u16));
        if (total < 20 || 14 + total > skb->len)
            return PROBE_UNREAD;
        f->family = 4;
        f->proto = PROBE_AT(data, 23, __u8);
        *(__u32 *)f->saddr = PROBE_AT(data, 26, __u32);
        *(__u32 *)f->daddr = PROBE_AT(data, 30, __u32);
        l4 = 34;
        l3_end = 14 + total;
    } else if (ethertype == bpf_htons(ETH_P_IPV6_)) {
        if (data + 54 > end)
            return PROBE_UNREAD;
        __u32 payload = bpf_ntohs(PROBE_AT(data, 18, __u16));
        if ((PROBE_AT(data, 14, __u8) >> 4) != 6 || payload == 0 || 54 + payload > skb->len)
            return PROBE_UNREAD;
        f->family = 6;
        f->proto = PROBE_AT(data, 20, __u8); /* TCP or UDP right after: no extension headers */
        *(__u64 *)f->saddr = PROBE_AT(data, 22, __u64);
        *(__u64 *)(f->saddr + 8) = PROBE_AT(data, 30, __u64);
        *(__u64 *)f->daddr = PROBE_AT(data, 38, __u64);
        *(__u64 *)(f->daddr + 8) = PROBE_AT(data, 46, __u64);
        l4 = 54;
        l3_end = 54 + payload;
    } else {
        return PROBE_UNREAD;
    }
    __u8 tcp_flags = 0;
    __u32 l4_len = 8;
    if (f->proto == IPPROTO_TCP) {
        if (data + l4 + 20 > end)
            return PROBE_UNREAD;
        l4_len = (PROBE_AT(data, l4 + 12, __u8) >> 4) * 4;
        if (l4 + 20 > l3_end || l4_len < 20 || l4 + l4_len > l3_end)
            return PROBE_UNREAD;
        tcp_flags = PROBE_AT(data, l4 + 13, __u8);
    } else if (f->proto == IPPROTO_UDP) {
        if (data + l4 + 8 > end)
            return PROBE_UNREAD;
        __u32 length = bpf_ntohs(PROBE_AT(data, l4 + 4, __u16));
        if (l4 + 8 > l3_end || length < 8 || l4 + length > l3_end)
            return PROBE_UNREAD;
    } else {
        return PROBE_UNREAD;
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
        return PROBE_UNREAD; /* not reached: index < FLOW_CACHE_SLOTS */
    *memo = m;
    int opens = f->proto == IPPROTO_TCP && (tcp_flags & 0x12) == 0x02;
    if (!opens && m->epoch == epoch && ct_keys_equal(&m->key, &key) &&
        (++m->hits & (FLOW_CACHE_RECHECK - 1)) != 0) { /* every RECHECK-th takes the lookup */
        *counter_slot = m->counter_slot;
        return PROBE_HIT;
    }
    /* The packet as parse_packet leaves it, the rest of *p zero. Each field is written from
     * the packet the way the parser writes it, in the same widths: written from the key
     * instead, the verifier found the two states unlike and walked the rest of the program
     * again: 997,000 instructions for tc_from_pod and 943,000 for tc_to_pod, against 671,000
     * and 779,000 this way. */
    __builtin_memset(p, 0, sizeof(*p));
    p->l3 = L3_IP;
    if (l4 == 34) { /* L4 right after Ethernet and a 20-byte IPv4 header: IPv4 */
        p->flow.family = 4;
        __builtin_memcpy(p->flow.saddr, data + 26, 4);
        __builtin_memcpy(p->flow.daddr, data + 30, 4);
    } else {
        p->flow.family = 6;
        __builtin_memcpy(p->flow.saddr, data + 22, 16);
        __builtin_memcpy(p->flow.daddr, data + 38, 16);
    }
    p->flow.proto = f->proto;
    p->l4_off = l4;
    __builtin_memcpy(&p->flow.sport, data + l4, 2);
    __builtin_memcpy(&p->flow.dport, data + l4 + 2, 2);
    p->l4_len = l4_len;
    p->tcp_flags = tcp_flags;
    return PROBE_READ;
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
