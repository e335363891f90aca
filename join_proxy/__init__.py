"""The join proxy (RFC 8995 4.1, 4.3): a bounded TCP circuit relay from the pledge
link to the registrar, announced over mDNS as ``_brski-proxy._tcp``."""
