"""`enforcer lab`: a cluster in network namespaces with the real agent and datapath."""
