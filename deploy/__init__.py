"""The load-balanced deployment: nginx in front of DTLS hosts in network namespaces."""
