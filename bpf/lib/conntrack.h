/* Connection tracking: which packets skip policy. Only replies and related ICMP errors
 * skip it; packets in the establishing direction are re-checked whenever the endpoint's
 * policy generation or the node's policy epoch changed since the entry was written, so a
 * revoked flow stops at its next packet. Fragment tracking lives here too: later fragments
 * borrow the first's ports.
 *
 * One entry per flow and interface, found with one lookup from either side: the key holds the
 * tuple in a canonical order (the lower address and port first) and the direction the
 * canonical order travels in (the packet's direction, flipped when the packet was swapped into
 * canonical order). A flow's packets and its replies thus share a key, while the same tuple
 * arriving from the other side (spoofed) has another. The entry records whether the
 * establishing packet was swapped (CT_F_SWAPPED): a packet oriented like it establishes,
 * one oriented the other way replies. */
#pragma once

#include "lib/maps.h"
#include "lib/parse.h"

#define CT_MISS 0
#define CT_REPLY 1
#define CT_RELATED 2
#define CT_ESTABLISHED 3

static __always_inline void flow_reverse(const struct flow *f, struct flow *r)
{
    __builtin_memcpy(r->saddr, f->daddr, 16);
    __builtin_memcpy(r->daddr, f->saddr, 16);
    r->sport = f->dport;
    r->dport = f->sport;
    r->proto = f->proto;
    r->family = f->family;
    r->pad[0] = 0;
    r->pad[1] = 0;
}

/* 1 when (saddr, sport) orders after (daddr, dport): any fixed total order will do. */
static __always_inline int flow_swapped(const struct flow *f)
{
    __u64 s0, s1, d0, d1;
    __builtin_memcpy(&s0, f->saddr, 8);
    __builtin_memcpy(&s1, f->saddr + 8, 8);
    __builtin_memcpy(&d0, f->daddr, 8);
    __builtin_memcpy(&d1, f->daddr + 8, 8);
    if (s0 != d0)
        return s0 > d0;
    if (s1 != d1)
        return s1 > d1;
    return f->sport > f->dport;
}

/* flow_reverse in place: no second flow on the stack. */
static __always_inline void flow_swap(struct flow *f)
{
    __u64 *s = (__u64 *)f->saddr, *d = (__u64 *)f->daddr;
    __u64 a = s[0], b = s[1];
    s[0] = d[0];
    s[1] = d[1];
    d[0] = a;
    d[1] = b;
    __be16 port = f->sport;
    f->sport = f->dport;
    f->dport = port;
}

/* The key of `f` seen travelling in `dir` at `ifindex`; returns whether f was swapped. */
static __always_inline int ct_key_init(struct ct_key *k, const struct flow *f, __u32 ifindex,
                                       __u8 dir)
{
    int swapped = flow_swapped(f);
    if (swapped)
        flow_reverse(f, &k->flow);
    else
        __builtin_memcpy(&k->flow, f, sizeof(*f));
    k->ifindex = ifindex;
    k->direction = dir ^ swapped;
    k->pad[0] = 0;
    k->pad[1] = 0;
    k->pad[2] = 0;
    return swapped;
}

/* A TCP SYN without ACK opens a connection: it is never a reply, not even on a closed flow's
 * tuple the other way round, and never part of the connection an entry it finds was written
 * for (entries stay until evicted: bpf/README.md, "Per packet"). */
static __always_inline int tcp_opens(const struct pkt *p)
{
    return p->flow.proto == IPPROTO_TCP && (p->tcp_flags & 0x12) == 0x02;
}

/* The entry of the flow `f` belongs to (travelling in `dir`), and whether f is its reply. */
static __always_inline struct ct_val *ct_find(const struct flow *f, __u32 ifindex, __u8 dir,
                                              int *reply)
{
    struct ct_key k = {};
    int swapped = ct_key_init(&k, f, ifindex, dir);
    struct ct_val *v = ct.lookup(&k);
    if (v)
        *reply = swapped != ((v->flags & CT_F_SWAPPED) != 0);
    return v;
}

/* Classifies the packet; *out points at the entry it belongs to (what the flow was checked
 * under). No per-packet writes to the entry: the LRU keeps live flows. */
static __always_inline int ct_lookup(const struct pkt *p, __u32 ifindex, __u8 dir,
                                     struct ct_val **out)
{
    int reply = 0;
    if (p->icmp_error) {
        /* An error about a packet of a tracked flow (either way) travels against it. */
        *out = ct_find(&p->inner, ifindex, dir ^ 1, &reply);
        return *out ? CT_RELATED : CT_MISS;
    }
    if (tcp_opens(p)) {
        /* A new connection, even on a tuple whose entry stands (a closed one's, either way
         * round): judged, reported and tracked as new, its entry replaced, as the kernel's
         * conntrack starts a new connection on a SYN that finds a closed one. A retransmitted
         * SYN is judged again: the same verdict, one more event. Whatever entry stands would
         * not count, so it is not looked up (the insert that follows finds and replaces it). */
        *out = 0;
        return CT_MISS;
    }
    *out = ct_find(&p->flow, ifindex, dir, &reply);
    if (!*out)
        return CT_MISS;
    return reply ? CT_REPLY : CT_ESTABLISHED;
}

static __always_inline int ct_write(const struct pkt *p, __u32 ifindex, __u8 dir, __u32 gen,
                                    __u64 epoch, __u32 flags, __u32 counter_slot)
{
    struct ct_key k = {};
    struct ct_val v = {};
    if (ct_key_init(&k, &p->flow, ifindex, dir))
        flags |= CT_F_SWAPPED;
    v.generation = gen;
    v.flags = flags;
    v.counter_slot = counter_slot <= 0xffff ? counter_slot : 0; /* else counted in the hash */
    v.epoch = epoch;
    return ct.update(&k, &v);
}

static __always_inline void ct_forget(const struct pkt *p, __u32 ifindex, __u8 dir)
{
    struct ct_key k = {};
    ct_key_init(&k, &p->flow, ifindex, dir);
    ct.delete(&k);
}

static __always_inline void frag_key_init(struct frag_key *k, const struct pkt *p)
{
    __builtin_memcpy(k->saddr, p->flow.saddr, 16);
    __builtin_memcpy(k->daddr, p->flow.daddr, 16);
    k->id = p->frag_id;
    k->proto = p->frag_proto;
    k->family = p->flow.family;
}

/* Later fragments: take the first fragment's ports, or fail closed. */
static __always_inline int frag_resolve(struct pkt *p)
{
    struct frag_key k = {};
    frag_key_init(&k, p);
    struct frag_val *v = frags.lookup(&k);
    if (!v)
        return DROP_FRAGMENT_UNTRACKED;
    /* A later fragment reaching back into the L4 header could rewrite the ports or TCP
     * flags the first fragment was judged by (RFC 1858): never let it through. */
    if (p->frag_off < v->l4_len)
        return DROP_FRAGMENT_OVERLAP;
    p->flow.sport = v->sport;
    p->flow.dport = v->dport;
    p->flow.proto = v->proto;
    return 0;
}

static __always_inline int frag_remember(const struct pkt *p)
{
    struct frag_key k = {};
    struct frag_val v = {};
    frag_key_init(&k, p);
    v.sport = p->flow.sport;
    v.dport = p->flow.dport;
    v.l4_len = p->l4_len;
    v.proto = p->flow.proto;
    return frags.update(&k, &v);
}
