"""The upstream NetworkPolicy e2e model (namespaces x, y, z; pods a, b, c; ports 80 and 81 on
TCP, UDP and SCTP) and a broad set of its cases, as plain manifests."""

from __future__ import annotations

from typing import Any

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP", "SCTP")


def namespace(name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"ns": name, **(extra or {})}},
    }


def pod(ns: str, name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    ports = [
        {"name": f"serve-{p}-{proto.lower()}", "containerPort": p, "protocol": proto}
        for p in PORTS
        for proto in PROTOCOLS
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": {"pod": name, **(extra or {})}},
        "spec": {"containers": [{"name": "c", "image": "agnhost", "ports": ports}]},
    }


def cluster() -> list[dict[str, Any]]:
    return [namespace(n) for n in NAMESPACES] + [pod(n, p) for n in NAMESPACES for p in PODS]


def policy(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": labels}


def cases(ip_of: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Case name -> policies. ip_of maps 'ns/pod' to its IPv4 address (for ipBlock cases)."""
    xa = ip_of["x/a"]
    xb = ip_of["x/b"]
    return {
        "default-deny-ingress": [
            policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress"]})
        ],
        "default-deny-all": [
            policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        ],
        "allow-from-same-namespace-podselector": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "ingress": [{"from": [{"podSelector": sel(pod="b")}]}],
                },
            )
        ],
        "allow-from-other-namespace": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "ingress": [{"from": [{"namespaceSelector": sel(ns="y")}]}],
                },
            )
        ],
        "pod-and-namespace-selector": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "ingress": [
                        {"from": [{"namespaceSelector": sel(ns="y"), "podSelector": sel(pod="b")}]}
                    ],
                },
            )
        ],
        "pod-or-namespace-selector": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "ingress": [
                        {
                            "from": [
                                {"namespaceSelector": sel(ns="y")},
                                {"podSelector": sel(pod="b")},
                            ]
                        }
                    ],
                },
            )
        ],
        "match-expressions": [
            policy(
                "p",
                "x",
                {
                    "podSelector": {
                        "matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]
                    },
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchExpressions": [
                                            {"key": "ns", "operator": "NotIn", "values": ["x"]}
                                        ]
                                    }
                                }
                            ]
                        }
                    ],
                },
            )
        ],
        "ports-and-protocol-only": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "ingress": [{"ports": [{"port": 80}, {"protocol": "UDP", "port": 81}]}],
                },
            )
        ],
        "named-port-ingress": [
            policy(
                "p",
                "x",
                {
                    "podSelector": {},
                    "ingress": [
                        {
                            "ports": [
                                {"port": "serve-81-tcp"},
                                {"port": "serve-80-udp", "protocol": "UDP"},
                            ]
                        }
                    ],
                },
            )
        ],
        "named-port-egress": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"port": "serve-80-tcp"}]}],
                },
            )
        ],
        "egress-deny-namespace": [
            policy("p", "y", {"podSelector": {}, "policyTypes": ["Egress"]}),
        ],
        "egress-to-namespace-with-port": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "policyTypes": ["Egress"],
                    "egress": [
                        {"to": [{"namespaceSelector": sel(ns="y")}], "ports": [{"port": 81}]}
                    ],
                },
            )
        ],
        "ingress-and-egress": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": sel(pod="b")}]}],
                    "egress": [{"to": [{"podSelector": sel(pod="c")}]}],
                },
            )
        ],
        "stacked-policies-allow-all-wins": [
            policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            policy("allow", "x", {"podSelector": sel(pod="a"), "ingress": [{}]}),
        ],
        "egress-ipblock-pod-ip": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="b"),
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": f"{xa}/32"}}]}],
                },
            )
        ],
        "ingress-ipblock-except": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="c"),
                    "ingress": [
                        {"from": [{"ipBlock": {"cidr": "198.18.0.0/15", "except": [f"{xb}/32"]}}]}
                    ],
                },
            )
        ],
        "sctp-only-policy": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}],
                },
            )
        ],
        "endport-range": [
            policy(
                "p",
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "ingress": [{"ports": [{"protocol": "TCP", "port": 79, "endPort": 80}]}],
                },
            )
        ],
        "metadata-name-label": [
            policy(
                "p",
                "x",
                {
                    "podSelector": {},
                    "ingress": [
                        {
                            "from": [
                                {"namespaceSelector": sel(**{"kubernetes.io/metadata.name": "z"})}
                            ]
                        }
                    ],
                },
            )
        ],
        "egress-empty-rule-list": [
            policy(
                "p", "z", {"podSelector": sel(pod="c"), "policyTypes": ["Egress"], "egress": []}
            ),
        ],
    }


PROBED = ((80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "SCTP"))
