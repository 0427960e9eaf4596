/* Drop, audit and (optionally) allowed-new-flow events on a ring buffer, rate-limited in the
 * kernel by a per-CPU token bucket so a flood cannot flood the agent. What the bucket refuses,
 * or the ring has no room for, is counted in event_lost: never silently lost. */
#pragma once

#include "lib/bucket.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/policy.h"

struct event {
    __u64 timestamp_ns;
    __u32 ifindex;
    __u32 endpoint_id;
    __u32 identity;
    __u8 direction;
    __u8 reason; /* 0: an allowed new flow; REASON_AUDIT: passed in audit mode */
    __u8 tcp_flags;
    __u8 pad;
    struct flow flow;
    /* The rule set (pol_val.rule_set) of the entry that allowed it (0: none), mapped back to
     * policies and rules by the agent. */
    __u32 rule_set;
    __u32 pad2;
};

BPF_RINGBUF_OUTPUT(events, EVENT_PAGES);

/* The node's bucket protects the agent; each endpoint's own protects the others' events from
 * one pod that opens flows as fast as it can. An event needs a token from both. */
BPF_PERCPU_ARRAY(event_bucket, struct bucket, 1);
/* By the interface's counter slot (ep_config.counter_slot: unique among local interfaces,
 * below EP_MAX): an array index, not a hash lookup, on every new flow. A slot's next owner
 * inherits its bucket's budget, which is harmless. */
BPF_PERCPU_ARRAY(ep_event_bucket, struct bucket, EP_MAX);
/* Events refused by the node's bucket (slot 0), by a full ring (slot 1), or by an endpoint's
 * own bucket (slot 2). Not pinned: a counter of this program's life, read by the agent that
 * loaded it. */
BPF_PERCPU_ARRAY(event_lost, __u64, 3);

static __always_inline void event_lost_count(__u32 slot)
{
    __u64 *n = event_lost.lookup(&slot);
    if (n)
        *n += 1;
}

static __always_inline int event_allowed(__u32 slot, __u64 now)
{
    __u64 cost = cfg_get(CFG_EVENT_COST_NS);
    if (cost == 0)
        return 0;
    __u64 ep_cost = cfg_get(CFG_EP_EVENT_COST_NS);
    if (slot && ep_cost) {
        struct bucket *eb = ep_event_bucket.lookup(&slot);
        if (eb && !bucket_take(eb, now, ep_cost, cfg_get(CFG_EP_EVENT_BURST_NS))) {
            event_lost_count(2);
            return 0;
        }
    }
    __u32 zero = 0;
    struct bucket *b = event_bucket.lookup(&zero);
    if (!b)
        return 0;
    if (!bucket_take(b, now, cost, cfg_get(CFG_EVENT_BURST_NS))) {
        event_lost_count(0);
        return 0;
    }
    return 1;
}

/* slot: the judging endpoint's counter slot, whose own bucket the event is charged to (0:
 * the node's only). identity 0 with resolve: looked up only once the event is let through
 * (an open direction judged no peer; most new flows' events are refused under load). */
static __always_inline void emit_ruled(struct __sk_buff *skb, const struct pkt *p, __u8 dir,
                                       __u8 reason, __u32 endpoint_id, __u32 slot,
                                       __u32 identity, __u32 rule_set, int resolve)
{
    __u64 now = bpf_ktime_get_ns();
    if (!event_allowed(slot, now))
        return;
    if (resolve && !identity)
        identity = peer_identity(&p->flow, dir);
    struct event ev = {};
    ev.rule_set = rule_set;
    ev.timestamp_ns = now;
    ev.ifindex = skb_ifindex(skb);
    ev.endpoint_id = endpoint_id;
    ev.identity = identity;
    ev.direction = dir;
    ev.reason = reason;
    ev.tcp_flags = p->tcp_flags;
    __builtin_memcpy(&ev.flow, &p->flow, sizeof(ev.flow));
    if (events.ringbuf_output(&ev, sizeof(ev), 0) != 0)
        event_lost_count(1);
}

static __always_inline void emit(struct __sk_buff *skb, const struct pkt *p, __u8 dir,
                                 __u8 reason, __u32 endpoint_id, __u32 slot, __u32 identity)
{
    emit_ruled(skb, p, dir, reason, endpoint_id, slot, identity, 0, 0);
}
