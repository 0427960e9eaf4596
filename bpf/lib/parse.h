/* Packet parsing: Ethernet, IPv4 (options, fragments), IPv6 (extension headers from an
 * allow-list, bounded), TCP, UDP, SCTP, ICMP, ICMPv6. Everything is read with
 * bpf_skb_load_bytes so non-linear skbs parse the same way, and every length is checked
 * against the IP header's own length and the skb's: what cannot be seen is a drop reason. */
#pragma once

#include "lib/common.h"

/* Header bytes at `off`: straight from the linear packet data when they are there (no helper
 * call: the common case on a veth), else through bpf_skb_load_bytes (non-linear skbs). */
#define DIRECT_MAX_OFF 256
static __always_inline int load_bytes(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    if (off <= DIRECT_MAX_OFF && data + off + len <= end) {
        __builtin_memcpy(to, data + off, len);
        return 0;
    }
    return bpf_skb_load_bytes(skb, off, to, len);
}

#define ETH_HLEN_ 14
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_ARP_ 0x0806

#define IPV6_MAX_EXT_HEADERS 6 /* HOP+DEST+ROUTING+FRAG+AH+DEST, the longest sane chain */

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_NONE 59
#define NEXTHDR_DEST 60
#define NEXTHDR_MOBILITY 135
#define NEXTHDR_HIP 139
#define NEXTHDR_SHIM6 140
#define NEXTHDR_EXP1 253
#define NEXTHDR_EXP2 254

#define FRAG_NONE 0
#define FRAG_FIRST 1
#define FRAG_LATER 2

#define L3_OTHER 0 /* not IP: ARP passes (from a pod: its own address), the rest needs an
                   * allow-everything direction */
#define L3_ARP 1
#define L3_IP 2

struct pkt {
    struct flow flow;
    struct flow inner; /* ICMP errors: the quoted packet's tuple */
    __u32 frag_id;
    __u8 frag_proto;   /* next header of the fragment header (IPv6) or IP protocol (IPv4) */
    __u8 pad0[1];
    __u16 l4_len;      /* L4 header bytes present (first fragments: must cover the ports) */
    __u16 frag_off;    /* later fragments: offset in bytes */
    __u8 l3;
    __u8 frag;
    __u8 icmp_error;   /* 1: inner holds a parsed quoted tuple */
    __u8 nd;           /* ICMPv6 neighbour discovery: its type (133-137), else 0 */
    __u8 tcp_flags;
    __u8 no_ct;        /* ICMP other than an echo request: has no replies to track */
    __u8 pad[2];
    __u32 l4_off;      /* where the L4 header starts (lib/services.h reads past the ports) */
};

#define ICMP_ECHOREPLY_ 0
#define ICMP_DEST_UNREACH_ 3
#define ICMP_ECHO_ 8
#define ICMP_TIME_EXCEEDED_ 11
#define ICMP_PARAMETERPROB_ 12
#define ICMPV6_DEST_UNREACH_ 1
#define ICMPV6_PKT_TOOBIG_ 2
#define ICMPV6_TIME_EXCEED_ 3
#define ICMPV6_PARAMPROB_ 4
#define ICMPV6_ECHO_REQUEST_ 128
#define ICMPV6_ECHO_REPLY_ 129
#define NDISC_FIRST 133 /* router solicitation .. redirect (137) */
#define NDISC_LAST 137

/* Ports of a TCP/UDP/SCTP header (all three start with sport, dport) or the echo id of
 * ICMP/ICMPv6. `need` is the L4 header length that must be present. Returns 0 or a reason. */
static __always_inline int read_ports(struct __sk_buff *skb, __u32 off, __u32 end, __u8 proto,
                                      struct flow *f, __u16 *l4_len, __u8 *tcp_flags,
                                      int check_udp_len)
{
    if (proto == IPPROTO_TCP) {
        __u8 h[20];
        if (off + 20 > end || load_bytes(skb, off, h, 20) < 0)
            return DROP_TRUNCATED;
        __u32 doff = (h[12] >> 4) * 4;
        if (doff < 20 || off + doff > end)
            return DROP_TRUNCATED;
        __builtin_memcpy(&f->sport, &h[0], 2);
        __builtin_memcpy(&f->dport, &h[2], 2);
        *tcp_flags = h[13];
        *l4_len = doff;
        return 0;
    }
    if (proto == IPPROTO_UDP) {
        __u8 h[8];
        if (off + 8 > end || load_bytes(skb, off, h, 8) < 0)
            return DROP_TRUNCATED;
        __u32 ulen = ((__u32)h[4] << 8) | h[5];
        /* The UDP length covers the whole datagram: only checkable when not fragmented. */
        if (check_udp_len && (ulen < 8 || off + ulen > end))
            return DROP_TRUNCATED;
        __builtin_memcpy(&f->sport, &h[0], 2);
        __builtin_memcpy(&f->dport, &h[2], 2);
        *l4_len = 8;
        return 0;
    }
    if (proto == IPPROTO_SCTP_) {
        __u8 h[12];
        if (off + 12 > end || load_bytes(skb, off, h, 12) < 0)
            return DROP_TRUNCATED;
        __builtin_memcpy(&f->sport, &h[0], 2);
        __builtin_memcpy(&f->dport, &h[2], 2);
        *l4_len = 12;
        return 0;
    }
    /* Any other protocol has no ports we trust: only rules without ports can match it. */
    *l4_len = 0;
    return 0;
}

static __always_inline void set_echo_ports(struct flow *f, __u8 *h, int request)
{
    if (request) {
        __builtin_memcpy(&f->sport, &h[4], 2);
        f->dport = 0;
    } else {
        f->sport = 0;
        __builtin_memcpy(&f->dport, &h[4], 2);
    }
}

/* The quoted packet of an ICMP error: its IP header and the first 8 bytes of its L4
 * header (enough for ports or an echo id). Returns 1 when parsed, 0 otherwise; an
 * unparsable quote only means the error is not "related" and goes through policy. */
static __always_inline int parse_inner4(struct __sk_buff *skb, __u32 off, __u32 end,
                                        struct flow *in)
{
    struct iphdr ip;
    if (off + sizeof(ip) > end || load_bytes(skb, off, &ip, sizeof(ip)) < 0)
        return 0;
    __u32 ihl = ip.ihl * 4;
    if (ihl < 20 || (ip.frag_off & bpf_htons(0x1fff)))
        return 0;
    in->family = 4;
    in->proto = ip.protocol;
    __builtin_memcpy(in->saddr, &ip.saddr, 4);
    __builtin_memcpy(in->daddr, &ip.daddr, 4);
    off += ihl;
    __u8 h[8];
    if (off + 8 > end || load_bytes(skb, off, h, 8) < 0)
        return 0;
    if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP ||
        ip.protocol == IPPROTO_SCTP_) {
        __builtin_memcpy(&in->sport, &h[0], 2);
        __builtin_memcpy(&in->dport, &h[2], 2);
    } else if (ip.protocol == IPPROTO_ICMP) {
        if (h[0] == ICMP_ECHO_ || h[0] == ICMP_ECHOREPLY_)
            set_echo_ports(in, h, h[0] == ICMP_ECHO_);
        else
            return 0;
    }
    return 1;
}

static __always_inline int parse_inner6(struct __sk_buff *skb, __u32 off, __u32 end,
                                        struct flow *in)
{
    struct ipv6hdr ip6;
    if (off + sizeof(ip6) > end || load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
        return 0;
    /* Quoted packets with extension headers are not matched (they simply are not
     * "related" and go through policy like any other ICMPv6 packet). */
    in->family = 6;
    in->proto = ip6.nexthdr;
    __builtin_memcpy(in->saddr, &ip6.saddr, 16);
    __builtin_memcpy(in->daddr, &ip6.daddr, 16);
    off += sizeof(ip6);
    __u8 h[8];
    if (off + 8 > end || load_bytes(skb, off, h, 8) < 0)
        return 0;
    if (ip6.nexthdr == IPPROTO_TCP || ip6.nexthdr == IPPROTO_UDP ||
        ip6.nexthdr == IPPROTO_SCTP_) {
        __builtin_memcpy(&in->sport, &h[0], 2);
        __builtin_memcpy(&in->dport, &h[2], 2);
        return 1;
    }
    if (ip6.nexthdr == IPPROTO_ICMPV6_ &&
        (h[0] == ICMPV6_ECHO_REQUEST_ || h[0] == ICMPV6_ECHO_REPLY_)) {
        set_echo_ports(in, h, h[0] == ICMPV6_ECHO_REQUEST_);
        return 1;
    }
    return 0;
}

/* ICMP/ICMPv6 header: echo ids, errors (with their quoted tuple), neighbour discovery. */
static __always_inline int parse_icmp(struct __sk_buff *skb, __u32 off, __u32 end,
                                      struct pkt *p)
{
    __u8 h[8];
    if (off + 8 > end || load_bytes(skb, off, h, 8) < 0)
        return DROP_TRUNCATED;
    p->l4_len = 8;
    /* Only an echo request has a reply worth tracking. Tracking errors or echo replies
     * would let the peer answer with arbitrary ICMP (or echo requests) as "replies". */
    p->no_ct = !(h[0] == ICMP_ECHO_ && p->flow.family == 4) &&
               !(h[0] == ICMPV6_ECHO_REQUEST_ && p->flow.family == 6);
    if (p->flow.family == 4) {
        if (h[0] == ICMP_ECHO_ || h[0] == ICMP_ECHOREPLY_)
            set_echo_ports(&p->flow, h, h[0] == ICMP_ECHO_);
        else if (h[0] == ICMP_DEST_UNREACH_ || h[0] == ICMP_TIME_EXCEEDED_ ||
                 h[0] == ICMP_PARAMETERPROB_)
            p->icmp_error = parse_inner4(skb, off + 8, end, &p->inner);
    } else {
        if (h[0] == ICMPV6_ECHO_REQUEST_ || h[0] == ICMPV6_ECHO_REPLY_)
            set_echo_ports(&p->flow, h, h[0] == ICMPV6_ECHO_REQUEST_);
        else if (h[0] >= ICMPV6_DEST_UNREACH_ && h[0] <= ICMPV6_PARAMPROB_)
            p->icmp_error = parse_inner6(skb, off + 8, end, &p->inner);
        else if (h[0] >= NDISC_FIRST && h[0] <= NDISC_LAST)
            p->nd = h[0]; /* its type: lib/source.h checks what a pod may claim */
    }
    return 0;
}

static __always_inline int parse_l4(struct __sk_buff *skb, __u32 off, __u32 end, struct pkt *p)
{
    if (p->frag == FRAG_LATER)
        return 0; /* no L4 header here: ports come from the fragment table */
    __u8 proto = p->flow.proto;
    p->l4_off = off;
    if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6_) {
        /* ICMP does not fragment in practice; a fragmented one is seen through its ids. */
        if ((proto == IPPROTO_ICMP) != (p->flow.family == 4))
            return 0; /* ICMPv6 over IPv4 or the reverse: no ports, policy decides */
        return parse_icmp(skb, off, end, p);
    }
    return read_ports(skb, off, end, proto, &p->flow, &p->l4_len, &p->tcp_flags,
                      p->frag == FRAG_NONE);
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
    struct iphdr ip;
    if (load_bytes(skb, off, &ip, sizeof(ip)) < 0)
        return DROP_TRUNCATED;
    __u32 ihl = ip.ihl * 4;
    __u32 tot = bpf_ntohs(ip.tot_len);
    if (ip.version != 4 || ihl < 20 || tot < ihl || off + tot > skb->len)
        return DROP_TRUNCATED;
    __u32 end = off + tot;
    p->flow.family = 4;
    p->flow.proto = ip.protocol;
    __builtin_memcpy(p->flow.saddr, &ip.saddr, 4);
    __builtin_memcpy(p->flow.daddr, &ip.daddr, 4);
    __u16 fo = bpf_ntohs(ip.frag_off);
    if (fo & 0x3fff) {
        p->frag_id = bpf_ntohs(ip.id);
        p->frag_proto = ip.protocol;
        p->frag = (fo & 0x1fff) ? FRAG_LATER : FRAG_FIRST;
        p->frag_off = (fo & 0x1fff) * 8;
    }
    return parse_l4(skb, off + ihl, end, p);
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
    struct ipv6hdr ip6;
    if (load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
        return DROP_TRUNCATED;
    __u32 plen = bpf_ntohs(ip6.payload_len);
    /* payload_len 0 means a jumbogram (hop-by-hop option): not supported, fail closed. */
    if (ip6.version != 6 || plen == 0 || off + 40 + plen > skb->len)
        return DROP_TRUNCATED;
    __u32 end = off + 40 + plen;
    p->flow.family = 6;
    __builtin_memcpy(p->flow.saddr, &ip6.saddr, 16);
    __builtin_memcpy(p->flow.daddr, &ip6.daddr, 16);
    __u8 nh = ip6.nexthdr;
    off += 40;
    int i;
    for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
        if (nh != NEXTHDR_HOP && nh != NEXTHDR_ROUTING && nh != NEXTHDR_DEST &&
            nh != NEXTHDR_FRAGMENT && nh != NEXTHDR_AUTH)
            break;
        __u8 eh[8];
        if (off + 8 > end || load_bytes(skb, off, eh, 8) < 0)
            return DROP_TRUNCATED;
        __u32 len;
        if (nh == NEXTHDR_FRAGMENT) {
            if (p->frag != FRAG_NONE)
                return DROP_IPV6_EXT_HEADER; /* two fragment headers */
            __u16 fo = ((__u16)eh[2] << 8) | eh[3];
            __u32 id;
            __builtin_memcpy(&id, &eh[4], 4);
            p->frag_id = bpf_ntohl(id);
            p->frag_proto = eh[0];
            p->frag_off = fo & 0xfff8;
            p->frag = (fo & 0xfff8) ? FRAG_LATER : FRAG_FIRST;
            /* An atomic fragment (offset 0, no M flag) is a whole packet. */
            if (!(fo & 0xfff9))
                p->frag = FRAG_NONE;
            len = 8;
        } else if (nh == NEXTHDR_AUTH) {
            len = ((__u32)eh[1] + 2) * 4; /* AH counts 4-octet units minus 2 */
        } else {
            len = ((__u32)eh[1] + 1) * 8;
        }
        nh = eh[0];
        off += len;
        if (p->frag == FRAG_LATER)
            break; /* the rest of the chain is in the first fragment */
    }
    if (p->frag != FRAG_LATER) {
        /* Still an extension header after the bound, or one outside the allow-list. */
        if (nh == NEXTHDR_HOP || nh == NEXTHDR_ROUTING || nh == NEXTHDR_DEST ||
            nh == NEXTHDR_FRAGMENT || nh == NEXTHDR_AUTH || nh == NEXTHDR_NONE ||
            nh == NEXTHDR_MOBILITY || nh == NEXTHDR_HIP || nh == NEXTHDR_SHIM6 ||
            nh == NEXTHDR_EXP1 || nh == NEXTHDR_EXP2)
            return DROP_IPV6_EXT_HEADER;
        if (off > end)
            return DROP_TRUNCATED;
    }
    p->flow.proto = nh;
    return parse_l4(skb, off, end, p);
}

/* Returns 0 when the packet was understood (p->l3 says what it is) or a drop reason. */
static __always_inline int parse_packet(struct __sk_buff *skb, struct pkt *p)
{
    __u8 eth[ETH_HLEN_];
    if (load_bytes(skb, 0, eth, ETH_HLEN_) < 0)
        return DROP_TRUNCATED;
    __u16 proto = ((__u16)eth[12] << 8) | eth[13];
    /* A tag the NIC (or veth) moved out of the frame is still a VLAN frame. */
    if (skb->vlan_present) {
        p->l3 = L3_OTHER;
        return 0;
    }
    if (proto == ETH_P_ARP_) {
        p->l3 = L3_ARP;
        /* IPv4 over Ethernet: the sender's address as the source (lib/source.h). */
        __u8 arp[18];
        if (load_bytes(skb, ETH_HLEN_, arp, 18) == 0 && arp[2] == 0x08 && arp[3] == 0 &&
            arp[4] == 6 && arp[5] == 4) {
            __builtin_memcpy(p->flow.saddr, arp + 14, 4);
            p->flow.family = 4;
        }
        return 0;
    }
    if (proto == ETH_P_IP_) {
        p->l3 = L3_IP;
        return parse_ipv4(skb, ETH_HLEN_, p);
    }
    if (proto == ETH_P_IPV6_) {
        p->l3 = L3_IP;
        return parse_ipv6(skb, ETH_HLEN_, p);
    }
    p->l3 = L3_OTHER; /* VLAN tags in the frame, MPLS, PPPoE, ...: not parsed */
    return 0;
}
