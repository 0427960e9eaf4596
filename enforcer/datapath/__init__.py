"""The kernel side: bcc-compiled TC program, pinned maps, attach, and typed map writes."""
