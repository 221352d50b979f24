/* See dtls_probe.c. */
#ifndef DTLS_PROBE_H
#define DTLS_PROBE_H
#include <stddef.h>
#include <openssl/ssl.h>

int dtls_probe_configured(SSL *ssl, const char *prefix, char *buf, size_t cap);
int dtls_probe_negotiated(SSL *ssl, const char *prefix, char *buf, size_t cap);
unsigned long dtls_probe_openssl_version_num(void);
#endif
