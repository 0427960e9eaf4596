/* Services: egress judged against the backend kube-proxy chose, not the ClusterIP.
 *
 * The source pod's hook (host veth tc ingress) runs before kube-proxy's DNAT and sees the
 * frontend (ClusterIP, external or load-balancer IP : port). There, a new flow to a frontend
 * in svc_frontends is not judged: it is *deferred* (CT entry flagged CT_F_DEFERRED, so the
 * rest of the flow passes this hook consistently). The source's egress is judged after the
 * DNAT, against the real backend and target port, where the packet leaves the node's stack:
 *   - at the backend's host veth (tc egress) when the backend is a local pod, and
 *   - at the tc egress of the node's other interfaces (uplink, tunnel) otherwise,
 * both finding the source by its address in local_eps. A ClusterIP is never allowed as such.
 *
 * A flow judged at the source hook with the very same tuple (no DNAT happened) is not judged
 * again: its CT entry (at the source's interface, egress, not deferred) says so.
 *
 * Hairpin: a pod reaching itself through its Service is DNATed back to itself and masqueraded
 * by kube-proxy, so it arrives from a node address. When a pod opens a flow to a frontend it
 * backs itself (self_backends), the source hook notes (interface, protocol, target port, and
 * a fingerprint of the packet that NAT does not change) in `hairpins`; the new flow arriving
 * at that pod within HAIRPIN_NS with that fingerprint is its own: allowed (a pod may always
 * reach itself) and tracked as such. */
#pragma once

#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/source.h"

#define HAIRPIN_NS 2000000000ULL /* a hairpin's first packet crosses the node in microseconds */
/* svc_val.flags: a NAT after the DNAT may masquerade this frontend's flows (a backend outside
 * the cluster, which a CNI masquerades; an external or load-balancer IP with
 * externalTrafficPolicy Cluster, which kube-proxy masquerades): note each new flow. */
#define SVC_F_MASQ 1

struct svc_key {
    __u8 addr[16];
    __be16 port;
    __u8 proto;
    __u8 family;
};
struct svc_val {
    __u32 flags;
};
BPF_TABLE_PINNED("hash", struct svc_key, struct svc_val, svc_frontends, SVC_MAX,
                 PIN_DIR "/svc_frontends");

/* (frontend, local endpoint) -> the endpoint's target port behind that frontend. */
struct self_key {
    struct svc_key frontend;
    __u32 endpoint_id;
};
struct self_val {
    __be16 target_port;
    __u8 pad[6];
};
BPF_TABLE_PINNED("hash", struct self_key, struct self_val, self_backends, SVC_MAX,
                 PIN_DIR "/self_backends");

/* New flows to SVC_F_MASQ frontends, by fingerprint: masqueraded after the DNAT (by a CNI on
 * their way out, flannel's ip-masq; by kube-proxy to a backend anywhere), their packets carry
 * the node's address, and the backend's hook or the uplink's must still find their pod. */
struct masq_key {
    __u32 fingerprint;
    __u8 proto;
    __u8 family;
    __u8 pad[2];
};
struct masq_val {
    __u64 time_ns;
    struct lep_val source;
};
BPF_TABLE("lru_hash", struct masq_key, struct masq_val, masq_notes, 16384);

/* Hairpins on their way: transient, so not pinned. The fingerprint makes a note match only
 * the very packet that wrote it, so concurrent flows of others cannot take its place. */
struct hairpin_key {
    __u32 ifindex;
    __be16 port;
    __u8 proto;
    __u8 family;
    __u32 fingerprint;
};
struct hairpin_val {
    __u64 time_ns;
};
BPF_TABLE("lru_hash", struct hairpin_key, struct hairpin_val, hairpins, 4096);

/* What NAT leaves alone in a flow's first packet: TCP's initial sequence number; for UDP the
 * IPv4 ID or IPv6 flow label, the length and the first payload bytes; SCTP's initiate tag. */
static __always_inline __u32 nat_fingerprint(struct __sk_buff *skb, const struct pkt *p)
{
    __u32 off = p->l4_off;
    __u32 a = 0, b = 0, c = 0;
    if (p->flow.proto == IPPROTO_TCP) {
        bpf_skb_load_bytes(skb, off + 4, &a, 4);
        return a;
    }
    if (p->flow.proto == IPPROTO_SCTP_) {
        bpf_skb_load_bytes(skb, off + 16, &a, 4);
        return a;
    }
    if (p->flow.proto != IPPROTO_UDP)
        return 0;
    if (p->flow.family == 4)
        bpf_skb_load_bytes(skb, ETH_HLEN_ + 4, &a, 2); /* IPv4 ID */
    else
        bpf_skb_load_bytes(skb, ETH_HLEN_, &a, 4); /* version, class, flow label */
    bpf_skb_load_bytes(skb, off + 4, &b, 2);      /* UDP length */
    bpf_skb_load_bytes(skb, off + 8, &c, 4);      /* payload (absent: stays 0) */
    __u32 d = 0;
    bpf_skb_load_bytes(skb, off + 12, &d, 4);
    return (a * 2654435761U) ^ (b << 16) ^ c ^ (d * 40503U);
}

static __always_inline void svc_key_of(struct svc_key *k, const struct flow *f)
{
    __builtin_memcpy(k->addr, f->daddr, 16);
    k->port = f->dport;
    k->proto = f->proto;
    k->family = f->family;
}

/* Source hook: is this new flow's destination a Service frontend? Notes a hairpin. `me`:
 * the local endpoint that owns the source address (the source check's lookup), or none. */
static __always_inline int svc_defer(struct __sk_buff *skb, const struct pkt *p,
                                     const struct lep_val *me, __u32 endpoint_id,
                                     __u32 ifindex, int new_flow)
{
    if (!has_ports(p->flow.proto))
        return 0;
    struct svc_key k = {};
    svc_key_of(&k, &p->flow);
    struct svc_val *fe = svc_frontends.lookup(&k);
    if (!fe)
        return 0;
    /* Only a flow the post-DNAT hooks will attribute to this very pod may wait for them: a
     * spoofed source address, or a pod whose address is not written yet, is judged here,
     * against the frontend (which no policy allows: fail closed). */
    if (!me || me->endpoint_id != endpoint_id)
        return 0;
    if (new_flow && (fe->flags & SVC_F_MASQ)) {
        struct masq_key mk = {};
        struct masq_val mv = {};
        mk.fingerprint = nat_fingerprint(skb, p);
        mk.proto = p->flow.proto;
        mk.family = p->flow.family;
        mv.time_ns = bpf_ktime_get_ns();
        mv.source.endpoint_id = me->endpoint_id;
        mv.source.ifindex = me->ifindex;
        masq_notes.update(&mk, &mv);
    }
    struct self_key sk = {};
    __builtin_memcpy(&sk.frontend, &k, sizeof(k));
    sk.endpoint_id = endpoint_id;
    struct self_val *self = new_flow ? self_backends.lookup(&sk) : 0;
    if (self) {
        struct hairpin_key hk = {};
        struct hairpin_val hv = {};
        hk.ifindex = ifindex;
        hk.port = self->target_port;
        hk.proto = p->flow.proto;
        hk.family = p->flow.family;
        hk.fingerprint = nat_fingerprint(skb, p);
        hv.time_ns = bpf_ktime_get_ns();
        hairpins.update(&hk, &hv);
    }
    return 1;
}

/* Backend's hook: is this new flow the pod's own hairpin (masqueraded back to it)? */
static __always_inline int svc_hairpin(struct __sk_buff *skb, const struct pkt *p,
                                       __u32 ifindex)
{
    if (!has_ports(p->flow.proto))
        return 0;
    struct hairpin_key hk = {};
    hk.ifindex = ifindex;
    hk.port = p->flow.dport;
    hk.proto = p->flow.proto;
    hk.family = p->flow.family;
    hk.fingerprint = nat_fingerprint(skb, p);
    struct hairpin_val *hv = hairpins.lookup(&hk);
    if (!hv)
        return 0;
    int fresh = bpf_ktime_get_ns() - hv->time_ns < HAIRPIN_NS;
    hairpins.delete(&hk); /* one flow per note */
    return fresh;
}

#define POSTNAT_PASS 0  /* nothing judged here (a reply, open egress, judged before) */
#define POSTNAT_DENY 1
#define POSTNAT_FULL 2
#define POSTNAT_ALLOW 3 /* judged here and allowed: a new flow's egress verdict */
#define POSTNAT_AUDIT 4 /* judged here, denied, passed: the source is in audit mode */

/* What an egress judged after DNAT decided, for its counters and event. */
struct postnat_verdict {
    __u32 endpoint_id; /* the source's */
    __u32 slot;        /* the source's counter slot (its event budget) */
    __u32 identity;    /* the backend's peer identity */
    __u32 rule_set;
};

/* Judge a local source's egress on a packet after DNAT (backend address and target port). */
static __always_inline int postnat_egress(const struct pkt *p, const struct lep_val *src,
                                          __u64 epoch, struct postnat_verdict *out)
{
    __u32 src_ifindex = src->ifindex;
    struct ep_config *sep = ep_config.lookup(&src_ifindex);
    if (!sep)
        return POSTNAT_DENY; /* its interface has no policy (yet): the unknown verdict */
    __u32 generation = sep->generation;
    out->endpoint_id = sep->endpoint_id;
    out->slot = sep->counter_slot;
    if (sep->flags & EP_F_OPEN(DIR_EGRESS))
        return POSTNAT_PASS; /* its egress allows everything: nothing to judge or track */
    int reply = 0;
    struct ct_val *v = ct_find(&p->flow, src_ifindex, DIR_EGRESS, &reply);
    if (v && reply) {
        if (!tcp_opens(p))
            return POSTNAT_PASS; /* a reply of a flow into the source */
        v = 0; /* a new connection the other way round (lib/conntrack.h): judged */
    }
    /* A SYN is a new connection (lib/conntrack.h): an entry written here (POSTNAT) is an
     * earlier connection's, whereas the source hook judged this very SYN before it came. */
    int opens = tcp_opens(p);
    if (v && !(v->flags & CT_F_DEFERRED) && !(opens && (v->flags & CT_F_POSTNAT)) &&
        v->generation == generation && v->epoch == epoch)
        return POSTNAT_PASS; /* judged with this very tuple: at the source hook, or before */
    out->identity = peer_identity(&p->flow, DIR_EGRESS);
    int verdict = v && !opens ? POSTNAT_PASS : POSTNAT_ALLOW; /* an event for new flows only */
    if (!policy_lookup(sep->endpoint_id, DIR_EGRESS, out->identity, p->flow.proto,
                       p->flow.dport, &out->rule_set)) {
        if (!(sep->flags & EP_F_AUDIT)) {
            if (v)
                ct_forget(p, src_ifindex, DIR_EGRESS);
            return POSTNAT_DENY;
        }
        verdict = POSTNAT_AUDIT;
    }
    if (!p->no_ct && ct_write(p, src_ifindex, DIR_EGRESS, generation, epoch, CT_F_POSTNAT,
                              sep->counter_slot) < 0)
        return POSTNAT_FULL;
    return verdict;
}

/* Backend's or uplink hook, for a packet no local pod's address is on: the first packet of a
 * flow to an SVC_F_MASQ frontend, masqueraded after its DNAT? Returns its pod, or 0. */
static __always_inline int masqueraded_source(struct __sk_buff *skb, const struct pkt *p,
                                              struct lep_val *src)
{
    if (p->flow.proto == IPPROTO_TCP && !tcp_opens(p))
        return 0; /* only a SYN starts a TCP flow */
    if (!has_ports(p->flow.proto))
        return 0;
    struct masq_key mk = {};
    mk.fingerprint = nat_fingerprint(skb, p);
    mk.proto = p->flow.proto;
    mk.family = p->flow.family;
    struct masq_val *mv = masq_notes.lookup(&mk);
    if (!mv)
        return 0;
    int fresh = bpf_ktime_get_ns() - mv->time_ns < HAIRPIN_NS;
    __builtin_memcpy(src, &mv->source, sizeof(*src));
    masq_notes.delete(&mk);
    return fresh;
}
