"""Rate limiting's policy: rules (configuration and ``rate_limit_rules``), IP lists,
violations and blocks, the snapshot every request is decided on, and the admin API."""
