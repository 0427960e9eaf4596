/* Shared definitions: headers, constants and the structures the Python side mirrors.
 * Every structure here is part of the pinned-map layout: changing one means bumping
 * LAYOUT_VERSION in enforcer/datapath/layout.py (the pins live under a versioned dir). */
#pragma once

#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

/* Sizes and the pin directory come from the loader as -D flags (see loader.py). */
#ifndef PIN_DIR
#error "PIN_DIR must be defined by the loader"
#endif

#define DIR_INGRESS 0 /* to the pod: tc egress of the host-side veth */
#define DIR_EGRESS 1  /* from the pod: tc ingress of the host-side veth */

/* Verdict codes: 0 means forwarded; the rest mirror DropReason in types.py. */
#define REASON_FORWARDED 0
#define DROP_SPOOFED_SOURCE 132
#define DROP_POLICY_DENIED 133
#define DROP_UNKNOWN_ENDPOINT 140
#define DROP_TRUNCATED 141
#define DROP_FRAGMENT_UNTRACKED 142
#define DROP_IPV6_EXT_HEADER 143
#define DROP_MAP_FULL 144
#define DROP_UNSUPPORTED_L3 145
#define DROP_FRAGMENT_OVERLAP 146
#define DROP_FLOW_BUDGET 147 /* a pod's new flow past its budget (lib/flowbudget.h) */
#define REASON_AUDIT 150 /* passed: policy denies it, the endpoint is in audit mode */

/* Reserved identities and protocol numbers (types.py). */
#define IDENTITY_ANY 0
#define IDENTITY_WORLD 1
#define PROTO_ANY 0
/* A protocol value no rule can name: used to ask "does this direction allow everything?" */
#define PROTO_PROBE_ALL 255

#define IPPROTO_SCTP_ 132
#define IPPROTO_ICMPV6_ 58

/* A flow as seen on the wire. IPv4 addresses use the first 4 bytes, the rest stay zero.
 * Ports are in network byte order. ICMP echo: the request carries the id as sport,
 * the reply as dport, so a reply matches the request's reverse tuple. */
struct flow {
    __u8 saddr[16];
    __u8 daddr[16];
    __be16 sport;
    __be16 dport;
    __u8 proto;
    __u8 family; /* 4 or 6 */
    __u8 pad[2];
};

/* Endpoint config, keyed by the host-side veth's ifindex (in the agent's netns). */
struct ep_config {
    __u32 endpoint_id;
    __u32 generation;
    __u32 flags;        /* EP_F_*: facts about this generation's tables */
    __u32 counter_slot; /* its row pair in fwd_counters (0: none, counted in `counters`) */
};
/* The generation allows everything in a direction (not isolated, or a rule for any peer and
 * protocol): no identity or policy lookup needed. Written with the generation number, after
 * the tables swap, so a packet seeing the flag is allowed by the old or the new generation.
 * 0 (an older writer) just means "look it up". */
#define EP_F_OPEN(dir) (1u << (dir))
/* Audit mode: what policy denies passes, counted and reported as REASON_AUDIT. Part of the
 * generation like the tables, so switching to enforce narrows like any policy change. */
#define EP_F_AUDIT (1u << 2)

/* Config array slots (u64 each). */
#define CFG_UNKNOWN_ALLOW 0  /* 1: interfaces without endpoint config pass */
#define CFG_EVENT_COST_NS 1  /* token bucket: ns of budget one event costs (0: no events) */
#define CFG_EVENT_BURST_NS 2 /* token bucket capacity in ns */
#define CFG_EVENT_ALLOWED 3  /* 1: also emit an event for each allowed new flow */
#define CFG_EP_EVENT_COST_NS 5  /* each endpoint's own token bucket (0: none) */
#define CFG_EP_EVENT_BURST_NS 6
/* Bumped by the agent on every change of peer identities, endpoint policy or Service maps:
 * an established flow checked under the current epoch needs no look at anything else. */
#define CFG_POLICY_EPOCH 4
/* A pod's new-flow budget: ns of budget one new flow costs (low 32 bits; 0: none) and how
 * many flows it may open at once (high 32 bits). One slot: the layout stays as pinned. */
#define CFG_FLOW_BUDGET 7
#define CFG_SLOTS 8

/* skb->ifindex, loaded straight from the context pointer. In a large function clang may keep
 * &skb->ifindex (ctx + 40) in a register and the verifier rejects loads through a modified
 * context pointer; inline asm pins the load to the context itself. */
static __always_inline __u32 skb_ifindex(struct __sk_buff *skb)
{
    __u32 v;
    asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(v) : "r"(skb),
                 "i"(__builtin_offsetof(struct __sk_buff, ifindex)));
    return v;
}
