"""802.1X with the LDevID, built from the components a real network uses.

Each module writes the configuration of one real program and runs it in a
Linux network namespace, given the namespace and interface names, so the
network lab (or a test's own topology) decides where things live:

* :mod:`brski_netaccess.freeradius`: FreeRADIUS 3 as EAP-TLS server that
  trusts only the domain CA, checks OCSP, and asks the registrar
  (rlm_rest, ``/netaccess/v1``) before it accepts;
* :mod:`brski_netaccess.hostapd`: hostapd (``driver=wired``) as 802.1X
  authenticator on one pledge port, with an RFC 5176 DAS, and
  ``hostapd_cli -a`` feeding its events to the port gate;
* :mod:`brski_netaccess.gate`: the nftables port gate on the edge;
* :mod:`brski_netaccess.supplicant`: wpa_supplicant (``-Dwired``) with the
  device's LDevID;
* :mod:`brski_netaccess.netns`: ``ip netns exec`` and process handling.
"""
