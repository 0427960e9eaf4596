/* The enforcer's TC program: one object, compiled once, attached to both hooks of every
 * local pod's host-side veth. All policy is data in maps (lib/maps.h).
 *
 *   tc ingress of the host veth = traffic FROM the pod = the pod's egress  -> tc_from_pod
 *   tc egress  of the host veth = traffic TO the pod   = the pod's ingress -> tc_to_pod
 *
 * Allowed packets return TC_ACT_UNSPEC so filters after ours (a CNI's) still run; drops
 * return TC_ACT_SHOT. We never redirect. */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/flowcache.h"
#include "lib/policy.h"
#include "lib/metrics.h"
#include "lib/events.h"
#include "lib/flowbudget.h"
#include "lib/source.h"
#include "lib/services.h"
#ifdef PROFILE_KINDS
#include "lib/profile.h"
/* The slow path's phase marks: timed in the profiling build only, nothing otherwise. */
#define MARK(dir, phase) profile_mark(dir, phase)
#else
#define MARK(dir, phase)
#endif

static __always_inline int forward(struct __sk_buff *skb, __u8 dir, __u32 counter_slot)
{
    count_forwarded(skb, dir, counter_slot);
    return TC_ACT_UNSPEC;
}

/* A packet of a tracked flow passes; its first fragment is remembered for the later ones.
 * A closed flow's entry (FIN or RST) stays until the LRU evicts it, as the kernel's own
 * conntrack keeps one for a while: deleting it on a reset cost more than the eviction it
 * saves, since a busy node's table is full anyway (bpf/README.md, "Per packet"). */
static __always_inline int pass_tracked(struct __sk_buff *skb, const struct pkt *p, __u8 dir,
                                        __u32 counter_slot)
{
    if (p->frag == FRAG_FIRST)
        frag_remember(p);
    return forward(skb, dir, counter_slot);
}

static __always_inline int drop(struct __sk_buff *skb, const struct pkt *p, __u8 dir,
                                __u8 reason, __u32 endpoint_id, __u32 slot, __u32 identity)
{
    count(skb, dir, reason);
    emit(skb, p, dir, reason, endpoint_id, slot, identity);
    return TC_ACT_SHOT;
}

/* A verdict of an egress judged after DNAT (lib/services.h): drop, or pass with its event
 * (an allowed new flow's, when allowed flows are reported; an audit pass's always). */
static __always_inline int postnat_outcome(struct __sk_buff *skb, const struct pkt *p,
                                           int verdict, const struct postnat_verdict *pv)
{
    if (verdict == POSTNAT_DENY)
        return drop(skb, p, DIR_EGRESS, DROP_POLICY_DENIED, pv->endpoint_id, pv->slot,
                    pv->identity);
    if (verdict == POSTNAT_FULL)
        return drop(skb, p, DIR_EGRESS, DROP_MAP_FULL, pv->endpoint_id, pv->slot,
                    pv->identity);
    if (verdict == POSTNAT_AUDIT) {
        count(skb, DIR_EGRESS, REASON_AUDIT);
        emit(skb, p, DIR_EGRESS, REASON_AUDIT, pv->endpoint_id, pv->slot, pv->identity);
    } else if (verdict == POSTNAT_ALLOW && cfg_get(CFG_EVENT_ALLOWED)) {
        emit_ruled(skb, p, DIR_EGRESS, REASON_FORWARDED, pv->endpoint_id, pv->slot,
                   pv->identity, pv->rule_set, 0);
    }
    return TC_ACT_UNSPEC;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
    __u32 ifindex = skb_ifindex(skb);
    /* The fast path: a flow checked under the node's current policy epoch passes after one
     * conntrack lookup. The agent bumps the epoch on every identity, endpoint (policy
     * generation, removal) and Service map change and conntrack flush, so a current entry
     * means nothing it was checked against has moved; its counter row travels in the entry. */
    __u64 epoch = cfg_get(CFG_POLICY_EPOCH);
    struct pkt p;
#if FLOW_CACHE_SLOTS > 0
    /* Before it, before even the parse: the per-CPU memory of flows it passed lately
     * (lib/flowcache.h). Only unfragmented packets: no fragment to remember. A packet it
     * reads but does not remember comes back parsed. */
    struct flow_memo *memo;
    __u32 cached_slot = 0;
    int probed = flow_cache_probe(skb, ifindex, dir, epoch, &p, &memo, &cached_slot);
    if (probed == PROBE_HIT)
        return forward(skb, dir, cached_slot);
#else
    int probed = 0;
#endif
    MARK(dir, PH_PROBE);
    /* At the to-pod hook skb->sk is set only for locally originated packets (see below). */
    int from_node = dir == DIR_INGRESS && skb->sk != 0;
    int reason = 0;
    if (probed != PROBE_READ) {
        __builtin_memset(&p, 0, sizeof(p));
        reason = parse_packet(skb, &p);
    }
    MARK(dir, PH_PARSE);

    if (reason == 0 && p.l3 == L3_ARP) {
        /* A known pod announces only its own address (lib/source.h); 0.0.0.0 probes. */
        struct ep_config *arp_ep = 0;
        if (dir == DIR_EGRESS && wears_another_address(&p.flow, ifindex) &&
            (arp_ep = ep_config.lookup(&ifindex)))
            return drop(skb, &p, dir, DROP_SPOOFED_SOURCE, arp_ep->endpoint_id,
                        arp_ep->counter_slot, 0);
        return forward(skb, dir, 0);
    }
    if (reason == 0 && p.l3 == L3_IP && p.frag == FRAG_LATER)
        reason = frag_resolve(&p);
    int tracked = reason == 0 && p.l3 == L3_IP && !p.nd;

    struct ct_val *entry = 0;
    int state = tracked ? ct_lookup(&p, ifindex, dir, &entry) : CT_MISS;
    MARK(dir, PH_CT);
    if (entry && entry->epoch == epoch) {
#if FLOW_CACHE_SLOTS > 0
        flow_cache_fill(memo, &p.flow, ifindex, dir, epoch, entry->counter_slot);
#endif
        return pass_tracked(skb, &p, dir, entry->counter_slot);
    }

    struct ep_config *ep = ep_config.lookup(&ifindex);
    if (!ep) {
        /* Attached before its pod is known (or after it left): deny unless configured. */
        if (cfg_get(CFG_UNKNOWN_ALLOW))
            return forward(skb, dir, 0);
        return drop(skb, &p, dir, DROP_UNKNOWN_ENDPOINT, 0, 0, 0);
    }
    __u32 endpoint_id = ep->endpoint_id;
    __u32 generation = ep->generation;
    __u32 slot = ep->counter_slot;
    int open = (ep->flags & EP_F_OPEN(dir)) != 0;

    if (reason != 0 || p.l3 != L3_IP) {
        /* Not even there from an address not the pod's (an IP header read, the rest not). */
        if (dir == DIR_EGRESS && p.l3 == L3_IP && wears_another_address(&p.flow, ifindex))
            return drop(skb, &p, dir, DROP_SPOOFED_SOURCE, endpoint_id, slot, 0);
        /* What we cannot see passes only where the direction allows everything anyway. */
        if (open || policy_allows_everything(endpoint_id, dir))
            return forward(skb, dir, slot);
        return drop(skb, &p, dir, reason ? reason : DROP_UNSUPPORTED_L3, endpoint_id,
                    slot, 0);
    }
    /* A pod speaks only from its own addresses, whatever its policy; to it, only what is
     * addressed to it is tracked (lib/source.h). Before replies: a packet wearing another
     * address is not anyone's reply either. */
    struct lep_val *me = dir == DIR_EGRESS ? local_source(&p.flow) : 0;
    if (dir == DIR_EGRESS && !(me && me->ifindex == ifindex)) {
        if (!anonymous_source(&p.flow))
            return drop(skb, &p, dir, DROP_SPOOFED_SOURCE, endpoint_id, slot, 0);
        p.no_ct = 1;
    }
    if (p.nd) {
        /* Neighbour discovery passes, unless a pod speaks in it for someone else. */
        if (dir == DIR_EGRESS && nd_claims_another(skb, &p, ifindex))
            return drop(skb, &p, dir, DROP_SPOOFED_SOURCE, endpoint_id, slot, 0);
        return forward(skb, dir, slot);
    }

    MARK(dir, PH_SOURCE);
    /* Replies and related errors pass whatever the epoch: policy decides which flows start.
     * An establishing packet under an older epoch is checked again. */
    if (state == CT_REPLY || state == CT_RELATED)
        return pass_tracked(skb, &p, dir, slot);

    /* To a pod, from a local pod: that pod's egress is judged here, after any DNAT, against
     * this pod and port (lib/services.h). A pod reaching itself always passes. */
    int self = 0;
    if (dir == DIR_INGRESS && !from_node) {
        struct lep_val *src = local_source(&p.flow);
        /* A local pod's flow masqueraded after its DNAT (an external IP kube-proxy
         * masquerades) carries the node's address: found by its first packet's note. */
        struct lep_val masq = {};
        int masqueraded = 0;
        if (!src && state == CT_MISS && masqueraded_source(skb, &p, &masq)) {
            src = &masq;
            masqueraded = 1;
        }
        if (src && src->endpoint_id == endpoint_id) {
            self = 1;
        } else if (src) {
            struct postnat_verdict pv = {};
            /* The masqueraded tuple is not the pod's: no entry of its egress to keep. */
            int no_ct = p.no_ct;
            if (masqueraded)
                p.no_ct = 1;
            int post = postnat_egress(&p, src, epoch, &pv);
            p.no_ct = no_ct;
            if (post == POSTNAT_DENY && state == CT_ESTABLISHED)
                ct_forget(&p, ifindex, dir);
            if (postnat_outcome(skb, &p, post, &pv) == TC_ACT_SHOT)
                return TC_ACT_SHOT;
        } else if (state == CT_MISS) {
            self = svc_hairpin(skb, &p, ifindex);
        } else if (entry) {
            /* A re-check: a pod's own hairpin stays its own whatever the policy. */
            self = (entry->flags & CT_F_SELF) != 0;
        }
    }

    /* New flow, or an established one to re-check. */
    __u32 flags = self ? CT_F_SELF : 0;
    /* To a Service frontend: judged after DNAT against the backend chosen. An open egress
     * has nothing to judge, but a pod that isolates its ingress still needs the hairpin
     * note svc_defer leaves (its own flow back to itself). */
    if (dir == DIR_EGRESS && !(open && (ep->flags & EP_F_OPEN(DIR_INGRESS))) &&
        svc_defer(skb, &p, me, endpoint_id, ifindex, state == CT_MISS)) {
        flags = CT_F_DEFERRED;
        self = 1; /* nothing to judge here */
    }
    /* The node's own traffic to its pods (kubelet probes) is always allowed, but only when
     * the node really sent it: at this hook skb->sk is set only for locally originated
     * packets, never for forwarded ones that merely carry a node IP (SNAT, spoofing). */
    int host = from_node;
    MARK(dir, PH_SERVICES);
    if (host)
        flags |= CT_F_HOST;
    __u32 identity = 0; /* looked up only where a verdict or an event needs it */
    __u32 rule_set = 0;
    __u8 event_reason = REASON_FORWARDED;
    if (!host && !self && !open) {
        identity = peer_identity(&p.flow, dir);
        if (!policy_lookup(endpoint_id, dir, identity, p.flow.proto, p.flow.dport, &rule_set)) {
            if (!(ep->flags & EP_F_AUDIT)) {
                if (state == CT_ESTABLISHED)
                    ct_forget(&p, ifindex, dir);
                return drop(skb, &p, dir, DROP_POLICY_DENIED, endpoint_id, slot, identity);
            }
            /* Audit: passes and is tracked as an allowed flow would be, so a switch to
             * enforce (a new generation) cuts it at its next packet. */
            event_reason = REASON_AUDIT;
            count(skb, dir, REASON_AUDIT);
        }
    }
    MARK(dir, PH_POLICY);
    if (dir == DIR_INGRESS && !p.no_ct && !owned_by(p.flow.daddr, p.flow.family, ifindex))
        p.no_ct = 1; /* flooded to this port, or multicast: judged packet by packet */
    if (!p.no_ct) {
        /* A new flow of the pod's own: within its budget (lib/flowbudget.h). One drop for
         * both refusals: each drop() inlines an event's emission. */
        int refused = 0;
        if (state == CT_MISS && dir == DIR_EGRESS && !flow_budget_take(slot))
            refused = DROP_FLOW_BUDGET;
        else if (ct_write(&p, ifindex, dir, generation, epoch, flags, slot) < 0)
            refused = DROP_MAP_FULL;
        if (refused)
            return drop(skb, &p, dir, refused, endpoint_id, slot, identity);
#if FLOW_CACHE_SLOTS > 0
        /* The entry is current: its flow's next packets here (the reply first) need no
         * lookup. */
        flow_cache_fill(memo, &p.flow, ifindex, dir, epoch,
                        slot <= 0xffff ? slot : 0); /* as ct_write keeps it */
#endif
    }
    if (p.frag == FRAG_FIRST)
        frag_remember(&p); /* on failure later fragments drop: fail closed */
    MARK(dir, PH_TRACK);
    /* An audit pass's event always; an allowed new flow's when those are reported, with the
     * rules that allowed it (not for a flow deferred to its post-DNAT check, which reports it
     * there against the backend). */
    if (event_reason == REASON_AUDIT ||
        (state == CT_MISS && !(flags & CT_F_DEFERRED) && cfg_get(CFG_EVENT_ALLOWED)))
        emit_ruled(skb, &p, dir, event_reason, endpoint_id, slot, identity, rule_set, 1);
    return forward(skb, dir, slot);
}

#ifdef PROFILE_KINDS
/* handle(), timed by packet kind (lib/profile.h). The kind is read after the run: a value
 * known across handle() would have the verifier walk it once per kind. */
static __always_inline int profiled(struct __sk_buff *skb, __u8 dir)
{
    __u64 t0 = bpf_ktime_get_ns();
    __u64 t1 = bpf_ktime_get_ns();
    profile_mark_begin(t1);
    int verdict = handle(skb, dir);
    profile_mark_end(dir, t1);
    __u64 t2 = bpf_ktime_get_ns();
    profile_add(dir * PK_KINDS + profile_kind(skb), t2 - t1);
    profile_add(dir * PK_KINDS + PK_CLOCK, t1 - t0);
    return verdict;
}
#define HOOK(skb, dir) profiled(skb, dir)
#else
#define HOOK(skb, dir) handle(skb, dir)
#endif

int tc_from_pod(struct __sk_buff *skb)
{
    return HOOK(skb, DIR_EGRESS);
}

int tc_to_pod(struct __sk_buff *skb)
{
    return HOOK(skb, DIR_INGRESS);
}

/* tc egress of the node's other interfaces (uplink, tunnels): a local pod's packet leaving the
 * node after DNAT is judged by that pod's egress against where it really goes (a backend on
 * another node, or a Service endpoint outside the cluster). Everything else passes: packets
 * that are not a local pod's were never ours, and what the parser cannot read was judged
 * (fail closed) at the pod's own hook. */
int tc_node_egress(struct __sk_buff *skb)
{
    struct pkt p = {};
    if (parse_packet(skb, &p) != 0 || p.l3 != L3_IP || p.nd || p.icmp_error ||
        p.frag == FRAG_LATER)
        return TC_ACT_UNSPEC;
    __u64 epoch = cfg_get(CFG_POLICY_EPOCH);
    struct lep_val *src = local_source(&p.flow);
    if (!src) {
        /* A pod's first packet to an outside endpoint, masqueraded by the CNI: judged on its
         * pod's egress (later packets of the flow carry the node's address and pass). */
        struct lep_val masq = {};
        if (!masqueraded_source(skb, &p, &masq))
            return TC_ACT_UNSPEC;
        struct pkt q = p;
        q.no_ct = 1; /* a masqueraded tuple: no entry of the pod's to keep */
        struct postnat_verdict mv = {};
        return postnat_outcome(skb, &p, postnat_egress(&q, &masq, epoch, &mv), &mv);
    }
    /* (A reply of a flow into the pod passes: postnat_egress finds it as that flow's reply.) */
    struct postnat_verdict pv = {};
    return postnat_outcome(skb, &p, postnat_egress(&p, src, epoch, &pv), &pv);
}
