/* Policy: peer identity from the LPM ipcache, then the endpoint's current generation
 * (an inner LPM map reached through pol_outer), looked up first with the peer's identity
 * and then with the wildcard identity. */
#pragma once

#include "lib/maps.h"
#include "lib/parse.h"

static __always_inline __u32 peer_identity(const struct flow *f, __u8 dir)
{
    const __u8 *addr = dir == DIR_EGRESS ? f->daddr : f->saddr;
    __u32 *id;
    if (f->family == 4) {
        struct ident4_key k = {.prefixlen = 32};
        __builtin_memcpy(k.addr, addr, 4);
        id = ident4.lookup(&k);
    } else {
        struct ident6_key k = {.prefixlen = 128};
        __builtin_memcpy(k.addr, addr, 16);
        id = ident6.lookup(&k);
    }
    return id ? *id : IDENTITY_WORLD;
}

static __always_inline int has_ports(__u8 proto)
{
    return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP_;
}

static __always_inline struct pol_val *policy_entry(void *inner, __u8 dir, __u32 identity,
                                                    __u8 proto, __be16 port)
{
    struct pol_key k = {};
    k.prefixlen = POL_PREFIX_FULL;
    k.direction = dir;
    k.identity = bpf_htonl(identity);
    k.proto = proto;
    k.port = has_ports(proto) ? port : 0;
    return bpf_map_lookup_elem(inner, &k);
}

/* Whether the endpoint's current generation allows (dir, identity, proto, port); *rule_set
 * gets the matching entry's rule set id (attribution), a deny entry's too. The peer's own
 * entries decide when one matches, deny entries included: the wildcard's are not read then. The compiler puts the any-peer rules
 * that also match into a peer's own entries (enforcer/datapath/policykeys.py), so the first
 * entry found names every rule that allows the flow. */
static __always_inline int policy_lookup(__u32 endpoint_id, __u8 dir, __u32 identity,
                                         __u8 proto, __be16 port, __u32 *rule_set)
{
    void *inner = pol_outer.lookup(&endpoint_id);
    if (!inner)
        return 0; /* no generation written yet: deny */
    struct pol_val *v = policy_entry(inner, dir, identity, proto, port);
    if (!v)
        v = policy_entry(inner, dir, IDENTITY_ANY, proto, port);
    if (!v)
        return 0;
    *rule_set = v->rule_set;
    return !v->deny;
}

/* For what the parser cannot look into: allowed only when the direction allows every
 * peer and protocol (a direction that is not isolated, or an allow-all rule). */
static __always_inline int policy_allows_everything(__u32 endpoint_id, __u8 dir)
{
    __u32 unused = 0;
    return policy_lookup(endpoint_id, dir, IDENTITY_ANY, PROTO_PROBE_ALL, 0, &unused);
}
