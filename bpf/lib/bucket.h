/* Token buckets in nanoseconds of budget: refilled with time, one unit of work costs `cost`
 * ns, at most `cap` ns are saved up (the burst). Per-CPU where they are used: no atomics. */
#pragma once

#include "lib/common.h"

struct bucket {
    __u64 last_ns;
    __u64 budget_ns;
    __u64 lost; /* what this bucket refused (per CPU) */
};

/* 1 and the cost taken, or 0 (counted in b->lost). */
static __always_inline int bucket_take(struct bucket *b, __u64 now, __u64 cost, __u64 cap)
{
    __u64 budget = b->budget_ns + (now - b->last_ns);
    if (budget > cap)
        budget = cap;
    b->last_ns = now;
    if (budget < cost) {
        b->budget_ns = budget;
        b->lost += 1;
        return 0;
    }
    b->budget_ns = budget - cost;
    return 1;
}
