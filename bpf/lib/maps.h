/* All maps. The persistent ones are pinned under PIN_DIR (a versioned directory); the loader
 * checks an existing pin's layout before bcc reuses it (bcc itself does not check). */
#pragma once

#include "lib/common.h"

/* ifindex -> endpoint */
BPF_TABLE_PINNED("hash", __u32, struct ep_config, ep_config, EP_MAX, PIN_DIR "/ep_config");

/* Peer identity by IP prefix. */
struct ident4_key {
    __u32 prefixlen;
    __u8 addr[4];
};
struct ident6_key {
    __u32 prefixlen;
    __u8 addr[16];
};
BPF_TABLE_PINNED("lpm_trie", struct ident4_key, __u32, ident4, IDENT_MAX, PIN_DIR "/ident4",
                 BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct ident6_key, __u32, ident6, IDENT_MAX, PIN_DIR "/ident6",
                 BPF_F_NO_PREALLOC);

/* Policy: like Cilium's key, protocol and port last so port ranges are masked prefixes.
 * Data bits: direction (8) + pad (24) | identity (32) | protocol (8) + pad (8) | port (16).
 * prefixlen 32: the whole direction is allowed (not isolated); 64: a peer, any protocol;
 * 80: a peer and protocol, any port; 80+k: a port prefix. */
struct pol_key {
    __u32 prefixlen;
    __u8 direction;
    __u8 pad1[3];
    __be32 identity;
    __u8 proto;
    __u8 pad2;
    __be16 port;
};
/* The original range, so the agent can read a generation back exactly, and the id of the set
 * of rules that allow what the entry matches (0: none), which events carry for attribution. */
struct pol_val {
    __u16 port_lo;
    __u16 port_hi;
    __u32 rule_set;
    /* A deny entry: what it matches is refused, whatever a shorter prefix (or the wildcard
     * identity) allows. Cluster-scoped policies' Deny rules and what ranks below them
     * (enforcer/compiler/tiers.py); NetworkPolicy alone writes allows only. */
    __u8 deny;
    __u8 pad[3];
};
#define POL_PREFIX_DIRECTION 32
#define POL_PREFIX_IDENTITY 64
#define POL_PREFIX_PROTO 80
#define POL_PREFIX_FULL 96

/* The inner map template: each endpoint's generation is a fresh map of this shape,
 * swapped into pol_outer with one update (the swap is the atomic step). */
BPF_F_TABLE("lpm_trie", struct pol_key, struct pol_val, pol_tmpl, POLICY_MAX, BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash_of_maps$pol_tmpl", __u32, int, pol_outer, EP_MAX, PIN_DIR "/pol_outer");

/* Conntrack, keyed by the flow's tuple in canonical order, the interface and the direction the
 * canonical order travels in (lib/conntrack.h): a flow between two local pods has one entry at
 * each pod's veth. */
struct ct_key {
    struct flow flow;
    __u32 ifindex;
    __u8 direction;
    __u8 pad[3];
};
struct ct_val {
    __u32 generation; /* the endpoint generation the establishing direction was checked under */
    __u16 flags;
    /* The interface's forwarded-packet counter row (ep_config.counter_slot; 0: none), so the
     * fast path needs no endpoint lookup. Was the upper half of a u32 `flags` that was always
     * zero: entries of the earlier program read as "no row" (counted in the hash). */
    __u16 counter_slot;
    __u64 epoch; /* the policy epoch it was checked under (CFG_POLICY_EPOCH) */
};
#define CT_F_HOST 1     /* created for a host-originated packet */
#define CT_F_DEFERRED 2 /* source hook: a flow to a Service frontend, judged after DNAT */
#define CT_F_POSTNAT 4  /* judged after DNAT (at the backend's veth or a node interface) */
#define CT_F_SELF 8     /* a pod's own hairpin flow: always allowed */
#define CT_F_SWAPPED 16 /* the establishing packet was swapped into the key's order */
BPF_TABLE_PINNED("lru_hash", struct ct_key, struct ct_val, ct, CT_MAX, PIN_DIR "/ct");

/* Fragments: the first fragment's ports, so later fragments get the same verdict. */
struct frag_key {
    __u8 saddr[16];
    __u8 daddr[16];
    __u32 id;
    __u8 proto;
    __u8 family;
    __u8 pad[2];
};
struct frag_val {
    __be16 sport;
    __be16 dport;
    __u16 l4_len; /* bytes of L4 header in the first fragment: later ones must not overlap */
    __u8 proto;   /* the first fragment's L4 protocol (IPv6: after any further headers) */
    __u8 pad;
};
BPF_TABLE_PINNED("lru_hash", struct frag_key, struct frag_val, frags, FRAG_MAX,
                 PIN_DIR "/frags");

/* Counters per interface, direction and reason (0 = forwarded). */
struct counter_key {
    __u32 ifindex;
    __u8 direction;
    __u8 reason;
    __u16 pad;
};
struct counter_val {
    __u64 packets;
    __u64 bytes;
};
BPF_TABLE_PINNED("lru_percpu_hash", struct counter_key, struct counter_val, counters,
                 COUNTER_MAX, PIN_DIR "/counters");
/* Forwarded packets per endpoint counter slot and direction: row slot * 2 + direction. */
BPF_TABLE_PINNED("percpu_array", __u32, struct counter_val, fwd_counters, EP_MAX * 2,
                 PIN_DIR "/fwd_counters");

BPF_TABLE_PINNED("array", __u32, __u64, config, CFG_SLOTS, PIN_DIR "/config");

static __always_inline __u64 cfg_get(__u32 slot)
{
    __u64 *v = config.lookup(&slot);
    return v ? *v : 0;
}
