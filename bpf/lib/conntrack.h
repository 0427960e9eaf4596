/* Connection tracking: which packets skip policy. Only replies and related ICMP errors
 * skip it; packets in the establishing direction are re-checked whenever the endpoint's
 * policy generation or the node's policy epoch changed since the entry was written, so a
 * revoked flow stops at its next packet. Fragment tracking lives here too: later fragments borrow the first's ports. */
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

static __always_inline void ct_key_init(struct ct_key *k, const struct flow *f, __u32 ifindex,
                                        __u8 dir)
{
    __builtin_memcpy(&k->flow, f, sizeof(*f));
    k->ifindex = ifindex;
    k->direction = dir;
    k->pad[0] = 0;
    k->pad[1] = 0;
    k->pad[2] = 0;
}

/* One lookup classifies a packet: ct_write stores each flow twice, under its establishing
 * tuple and under its reply tuple (flagged CT_F_REPLY, the other direction), so a reply finds
 * its own entry. For CT_ESTABLISHED, *out points at the entry (what it was checked under). */
static __always_inline int ct_lookup(const struct pkt *p, __u32 ifindex, __u8 dir,
                                     struct ct_val **out)
{
    struct ct_key k = {};
    struct ct_val *v;

    if (p->icmp_error) {
        /* An error about a packet of a tracked flow travels against that packet: the quoted
         * tuple is the flow's (or its reply's) in the other direction. */
        ct_key_init(&k, &p->inner, ifindex, dir ^ 1);
        return ct.lookup(&k) ? CT_RELATED : CT_MISS;
    }
    ct_key_init(&k, &p->flow, ifindex, dir);
    /* No per-packet writes to the entry: the LRU keeps live flows. */
    v = ct.lookup(&k);
    if (!v)
        return CT_MISS;
    if (v->flags & CT_F_REPLY)
        return CT_REPLY;
    *out = v;
    return CT_ESTABLISHED;
}

static __always_inline int ct_write(const struct pkt *p, __u32 ifindex, __u8 dir, __u32 gen,
                                    __u64 epoch, __u32 flags)
{
    struct ct_key k = {};
    struct ct_val v = {};
    struct flow r = {};
    ct_key_init(&k, &p->flow, ifindex, dir);
    v.generation = gen;
    v.flags = flags;
    v.epoch = epoch;
    if (ct.update(&k, &v) < 0)
        return -1;
    flow_reverse(&p->flow, &r);
    ct_key_init(&k, &r, ifindex, dir ^ 1);
    v.flags = flags | CT_F_REPLY;
    return ct.update(&k, &v);
}

static __always_inline void ct_forget(const struct pkt *p, __u32 ifindex, __u8 dir)
{
    struct ct_key k = {};
    struct flow r = {};
    ct_key_init(&k, &p->flow, ifindex, dir);
    ct.delete(&k);
    flow_reverse(&p->flow, &r);
    ct_key_init(&k, &r, ifindex, dir ^ 1);
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
