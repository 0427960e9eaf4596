"""The node agent: sources -> cluster state -> compiler -> datapath, plus endpoints and metrics."""
