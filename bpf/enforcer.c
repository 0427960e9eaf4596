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
#include "lib/policy.h"
#include "lib/metrics.h"
#include "lib/events.h"

static __always_inline int forward(struct __sk_buff *skb, __u8 dir)
{
    count(skb, dir, REASON_FORWARDED);
    return TC_ACT_UNSPEC;
}

static __always_inline int drop(struct __sk_buff *skb, const struct pkt *p, __u8 dir,
                                __u8 reason, __u32 endpoint_id, __u32 identity)
{
    count(skb, dir, reason);
    emit(skb, p, dir, reason, endpoint_id, identity);
    return TC_ACT_SHOT;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
    struct pkt p = {};
    __u32 ifindex = skb->ifindex;
    int reason = parse_packet(skb, &p);

    if (reason == 0 && p.l3 == L3_ARP)
        return forward(skb, dir);

    struct ep_config *ep = ep_config.lookup(&ifindex);
    if (!ep) {
        /* Attached before its pod is known (or after it left): deny unless configured. */
        if (cfg_get(CFG_UNKNOWN_ALLOW))
            return forward(skb, dir);
        return drop(skb, &p, dir, DROP_UNKNOWN_ENDPOINT, 0, 0);
    }
    __u32 endpoint_id = ep->endpoint_id;
    __u32 generation = ep->generation;

    if (reason == 0 && p.l3 == L3_IP && p.frag == FRAG_LATER)
        reason = frag_resolve(&p);
    if (reason != 0 || p.l3 != L3_IP) {
        /* What we cannot see passes only where the direction allows everything anyway. */
        if (policy_allows_everything(endpoint_id, dir))
            return forward(skb, dir);
        return drop(skb, &p, dir, reason ? reason : DROP_UNSUPPORTED_L3, endpoint_id, 0);
    }
    if (p.nd)
        return forward(skb, dir); /* neighbour discovery always passes */

    /* A flow is re-checked when its endpoint's policy or any peer's identity changed. */
    __u64 epoch = cfg_get(CFG_IDENTITY_EPOCH);
    __u32 ct_generation = 0;
    __u64 ct_epoch = 0;
    int state = ct_lookup(&p, ifindex, dir, &ct_generation, &ct_epoch);
    if (state == CT_REPLY || state == CT_RELATED ||
        (state == CT_ESTABLISHED && ct_generation == generation && ct_epoch == epoch)) {
        if (p.frag == FRAG_FIRST)
            frag_remember(&p);
        return forward(skb, dir);
    }

    /* New flow, or an established one to re-check. */
    __u32 identity = peer_identity(&p.flow, dir);
    /* The node's own traffic to its pods (kubelet probes) is always allowed, but only when
     * the node really sent it: at this hook skb->sk is set only for locally originated
     * packets, never for forwarded ones that merely carry a node IP (SNAT, spoofing). */
    int host = dir == DIR_INGRESS && skb->sk != 0;
    if (!host && !policy_lookup(endpoint_id, dir, identity, p.flow.proto, p.flow.dport)) {
        if (state == CT_ESTABLISHED)
            ct_forget(&p, ifindex, dir);
        return drop(skb, &p, dir, DROP_POLICY_DENIED, endpoint_id, identity);
    }
    if (!p.no_ct && ct_write(&p, ifindex, dir, generation, epoch, host ? CT_F_HOST : 0) < 0)
        return drop(skb, &p, dir, DROP_MAP_FULL, endpoint_id, identity);
    if (p.frag == FRAG_FIRST)
        frag_remember(&p); /* on failure later fragments drop: fail closed */
    if (state == CT_MISS && cfg_get(CFG_EVENT_ALLOWED))
        emit(skb, &p, dir, REASON_FORWARDED, endpoint_id, identity);
    return forward(skb, dir);
}

int tc_from_pod(struct __sk_buff *skb)
{
    return handle(skb, DIR_EGRESS);
}

int tc_to_pod(struct __sk_buff *skb)
{
    return handle(skb, DIR_INGRESS);
}
