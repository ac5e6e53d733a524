//! The embedded default provider: an allow-list file (plain, nginx, haproxy, json).
