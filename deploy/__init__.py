"""The load-balanced deployment: the kernel's NAT in front of DTLS hosts in namespaces."""
