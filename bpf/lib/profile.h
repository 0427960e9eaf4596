/* A profiling build only (-DPROFILE_KINDS; bench/flow_profile.py): each run's time in the
 * program, summed per CPU by hook and by the kind of packet (a TCP SYN, SYN-ACK, bare ACK,
 * data, FIN, RST; UDP; anything else), so a connection's cost can be split packet by packet
 * at the source's and the destination's veth. Two clock reads per run, and one more to
 * measure what a read itself costs (slot PK_CLOCK), which the report subtracts. A run that
 * the flow memory does not pass is also split into phases by marks in handle() (MARK, one
 * clock read each: enforcer.c), which makes such a run dearer than in the plain build. */
#pragma once

#include "lib/common.h"

#define PK_OTHER 0
#define PK_SYN 1
#define PK_SYNACK 2
#define PK_ACK 3
#define PK_DATA 4
#define PK_FIN 5
#define PK_RST 6
#define PK_UDP 7
#define PK_CLOCK 8
#define PK_KINDS 9

struct profile_val {
    __u64 runs;
    __u64 ns;
};
/* Row dir * PK_KINDS + kind. Not pinned: a profile of this program's life. */
BPF_PERCPU_ARRAY(profile, struct profile_val, 2 * PK_KINDS);

/* The packet's kind, read with helpers outside the timed part (Ethernet, IPv4 or IPv6
 * without extension headers; anything else is PK_OTHER). */
static __always_inline __u32 profile_kind(struct __sk_buff *skb)
{
    __u8 eth[2];
    if (bpf_skb_load_bytes(skb, 12, eth, 2) < 0)
        return PK_OTHER;
    __u32 l4, payload;
    __u8 proto;
    if (eth[0] == 0x08 && eth[1] == 0x00) {
        __u8 ip[20];
        if (bpf_skb_load_bytes(skb, 14, ip, 20) < 0)
            return PK_OTHER;
        __u32 ihl = (ip[0] & 0xf) * 4;
        l4 = 14 + ihl;
        payload = (((__u32)ip[2] << 8) | ip[3]) - ihl;
        proto = ip[9];
    } else if (eth[0] == 0x86 && eth[1] == 0xdd) {
        __u8 ip6[8];
        if (bpf_skb_load_bytes(skb, 14, ip6, 8) < 0)
            return PK_OTHER;
        l4 = 54;
        payload = ((__u32)ip6[4] << 8) | ip6[5];
        proto = ip6[6];
    } else {
        return PK_OTHER;
    }
    if (proto == IPPROTO_UDP)
        return PK_UDP;
    if (proto != IPPROTO_TCP)
        return PK_OTHER;
    __u8 tcp[14];
    if (bpf_skb_load_bytes(skb, l4, tcp, 14) < 0)
        return PK_OTHER;
    __u8 flags = tcp[13];
    if (flags & 0x04)
        return PK_RST;
    if (flags & 0x02)
        return (flags & 0x10) ? PK_SYNACK : PK_SYN;
    if (flags & 0x01)
        return PK_FIN;
    return payload > (__u32)(tcp[12] >> 4) * 4 ? PK_DATA : PK_ACK;
}

static __always_inline void profile_add(__u32 row, __u64 ns)
{
    struct profile_val *v = profile.lookup(&row);
    if (v) {
        v->runs += 1;
        v->ns += ns;
    }
}

/* Phases of a run past the flow memory (the slow path), timed by marks: each mark adds the
 * time since the previous one to its phase's row (dir * PH_COUNT + phase). */
#define PH_PROBE 0    /* the flow memory's probe (for runs that go on) */
#define PH_PARSE 1
#define PH_CT 2       /* the conntrack lookup */
#define PH_SOURCE 3   /* endpoint, source address checks */
#define PH_SERVICES 4 /* post-DNAT egress check, Services, hairpin */
#define PH_POLICY 5   /* peer identity and the policy lookups */
#define PH_TRACK 6    /* flow budget, conntrack write, the memory's fill */
#define PH_REST 7     /* the event, the counter, until the return */
#define PH_COUNT 8
BPF_PERCPU_ARRAY(profile_phases, struct profile_val, 2 * PH_COUNT);
BPF_PERCPU_ARRAY(profile_mark_at, __u64, 1);

static __always_inline void profile_mark(__u8 dir, __u32 phase)
{
    __u32 zero = 0;
    __u64 *at = profile_mark_at.lookup(&zero);
    if (!at)
        return;
    __u64 now = bpf_ktime_get_ns();
    if (*at) {
        __u32 row = dir * PH_COUNT + phase;
        struct profile_val *v = profile_phases.lookup(&row);
        if (v) {
            v->runs += 1;
            v->ns += now - *at;
        }
    }
    *at = now;
}

/* A run starts at `t`: the first mark (the probe's, on the slow path only) times from it. */
static __always_inline void profile_mark_begin(__u64 t)
{
    __u32 zero = 0;
    __u64 *at = profile_mark_at.lookup(&zero);
    if (at)
        *at = t;
}

/* The run ends: the rest since the last mark, for runs that took the slow path. */
static __always_inline void profile_mark_end(__u8 dir, __u64 t)
{
    __u32 zero = 0;
    __u64 *at = profile_mark_at.lookup(&zero);
    if (at && *at != t)
        profile_mark(dir, PH_REST);
}
