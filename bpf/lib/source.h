/* Addresses of the local pods: who may speak from which address.
 *
 * local_eps maps each local pod's addresses to its endpoint and host veth. At the pod's own
 * hook it is the ground truth of who a packet is from: the interface it arrived on, not the
 * source address it carries. So
 *   - tc_from_pod drops a packet whose source is not one of the pod's own addresses (another
 *     pod's, a remote one's, any other), before anything could judge it under that address:
 *     otherwise a pod whose egress is open could wear a peer's address past a destination's
 *     ingress. IPv6 link-local and unspecified sources (neighbour discovery, MLD) are not
 *     anyone's in policy terms; such packets are judged as usual, but never tracked.
 *   - tc_to_pod tracks only packets addressed to the pod itself: on a bridge, unicast
 *     flooded to every port (an unknown MAC) reaches other pods' veths too, and an entry for
 *     someone else's flow at this interface would let this pod answer as that flow's peer.
 * Together: every conntrack entry at a pod's interface has one of that pod's own addresses on
 * the pod's side, so the fast path (an entry alone) needs no address check.
 *
 * At layer 2 likewise: a pod's ARP must name its own address as the sender, its neighbour
 * advertisements only its own addresses as the target, and it sends no router advertisements
 * or redirects. On a bridge, any of these could otherwise make its neighbours (or the node)
 * deliver another pod's traffic to it.
 *
 * Services (lib/services.h) use the same map to find the source pod of a packet after DNAT. */
#pragma once

#include "lib/maps.h"

struct lep_key {
    __u8 addr[16];
    __u8 family;
    __u8 pad[3];
};
struct lep_val {
    __u32 endpoint_id;
    __u32 ifindex; /* its host veth: where its ep_config and CT entries live */
};
BPF_TABLE_PINNED("hash", struct lep_key, struct lep_val, local_eps, EP_MAX,
                 PIN_DIR "/local_eps");

static __always_inline struct lep_val *local_endpoint_of(const __u8 *addr, __u8 family)
{
    struct lep_key k = {};
    __builtin_memcpy(k.addr, addr, 16);
    k.family = family;
    return local_eps.lookup(&k);
}

static __always_inline struct lep_val *local_source(const struct flow *f)
{
    return local_endpoint_of(f->saddr, f->family);
}

/* Is `addr` one of the addresses of the pod behind `ifindex`? */
static __always_inline int owned_by(const __u8 *addr, __u8 family, __u32 ifindex)
{
    struct lep_val *owner = local_endpoint_of(addr, family);
    return owner && owner->ifindex == ifindex;
}

/* The unspecified address (either family: IPv4 uses the first 4 bytes, the rest are zero)
 * or an IPv6 link-local one (fe80::/10). */
static __always_inline int anonymous_address(const __u8 *addr, __u8 family)
{
    if (family == 6 && addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80)
        return 1;
    __u64 a, b;
    __builtin_memcpy(&a, addr, 8);
    __builtin_memcpy(&b, addr + 8, 8);
    return (a | b) == 0;
}

static __always_inline int anonymous_source(const struct flow *f)
{
    return anonymous_address(f->saddr, f->family);
}

/* A source address read (family set) that is neither this pod's nor anonymous. */
static __always_inline int wears_another_address(const struct flow *f, __u32 ifindex)
{
    return f->family && !anonymous_source(f) && !owned_by(f->saddr, f->family, ifindex);
}

#define ND_ROUTER_ADVERT 134
#define ND_NEIGHBOUR_ADVERT 136
#define ND_REDIRECT 137

/* Neighbour discovery from a pod that speaks for someone else: a router advertisement or a
 * redirect (a pod is no router; on a bridge either would steer its neighbours' traffic
 * through it), or a neighbour advertisement for an address that is not the pod's own. */
static __always_inline int nd_claims_another(struct __sk_buff *skb, const struct pkt *p,
                                             __u32 ifindex)
{
    if (p->nd == ND_ROUTER_ADVERT || p->nd == ND_REDIRECT)
        return 1;
    if (p->nd != ND_NEIGHBOUR_ADVERT)
        return 0;
    __u8 target[16];
    if (bpf_skb_load_bytes(skb, p->l4_off + 8, target, 16) < 0)
        return 1; /* too short to say whose it is */
    return !anonymous_address(target, 6) && !owned_by(target, 6, ifindex);
}
