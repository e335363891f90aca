"""Network plumbing shared by the roles: mDNS discovery and announcement
(RFC 6762/6763, RFC 8995 4.1 and Appendix B) and link-local address helpers.

The roles import from here; this package imports no role."""
