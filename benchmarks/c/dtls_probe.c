/*
 * What one DTLS endpoint is configured with and what it negotiated, as key=value lines.
 *
 * The same code reports for the C baseline (linked into dtls_baseline) and for dtls_ossl
 * (built as a shared object and called by benchmarks/_dtls_ossl_peer.py on the library's own
 * SSL and SSL_CTX), so the benchmark compares like with like by comparing these lines. Only
 * public libssl calls: it works on any SSL of the process's libssl.
 *
 *   dtls_probe_configured(ssl, prefix, buf, cap)  before (or after) a handshake:
 *       options, session_cache_mode, verify_mode, min_version, max_version,
 *       ciphers (the effective list, expanded), srtp_profiles, own_key, own_cert_signature,
 *       own_cert_shape
 *   dtls_probe_negotiated(ssl, prefix, buf, cap)  after a handshake:
 *       version, cipher, group, extms, peer_groups and shared_groups (server side),
 *       srtp_profile, session_reused, ticket, ticket_lifetime_hint, peer_key,
 *       peer_signature, data_mtu, sessions_cached
 *
 * Both return the number of bytes written (without the NUL), or -1 if buf is too small.
 */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/srtp.h>
#include <openssl/x509.h>

#include "dtls_probe.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t cap, len;
    int overflow;
} out_t;

static void put(out_t *o, const char *prefix, const char *key, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (o->overflow)
        return;
    n = snprintf(o->buf + o->len, o->cap - o->len, "%s%s=", prefix, key);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    o->len += (size_t)n;
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 1 >= o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    o->len += (size_t)n;
    o->buf[o->len++] = '\n';
    o->buf[o->len] = '\0';
}

static int finish(out_t *o)
{
    return o->overflow ? -1 : (int)o->len;
}

static const char *version_name(int v)
{
    switch (v) {
    case 0:
        return "any";
    case DTLS1_VERSION:
        return "DTLSv1";
    case DTLS1_2_VERSION:
        return "DTLSv1.2";
#ifdef DTLS1_3_VERSION
    case DTLS1_3_VERSION:
        return "DTLSv1.3";
#endif
    default:
        return "other";
    }
}

/* "EC P-256", "RSA 2048", ... or "none". */
static void key_name(EVP_PKEY *pkey, char *name, size_t cap)
{
    char group[64];
    size_t glen = 0;
    if (pkey == NULL) {
        snprintf(name, cap, "none");
        return;
    }
    if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) == 1) {
        const char *nist = EC_curve_nid2nist(OBJ_sn2nid(group));
        snprintf(name, cap, "%s %s", EVP_PKEY_get0_type_name(pkey), nist ? nist : group);
    } else {
        snprintf(name, cap, "%s %d", EVP_PKEY_get0_type_name(pkey), EVP_PKEY_get_bits(pkey));
    }
}

int dtls_probe_configured(SSL *ssl, const char *prefix, char *buf, size_t cap)
{
    out_t o = {buf, cap, 0, 0};
    char list[4096];
    size_t len = 0;
    int i;
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    if (cap == 0)
        return -1;
    buf[0] = '\0';

    put(&o, prefix, "options", "0x%llx", (unsigned long long)SSL_get_options(ssl));
    put(&o, prefix, "session_cache_mode", "0x%lx", (long)SSL_CTX_get_session_cache_mode(ctx));
    put(&o, prefix, "verify_mode", "0x%x", SSL_get_verify_mode(ssl));
    put(&o, prefix, "min_version", "%s", version_name((int)SSL_get_min_proto_version(ssl)));
    put(&o, prefix, "max_version", "%s", version_name((int)SSL_get_max_proto_version(ssl)));

    STACK_OF(SSL_CIPHER) *ciphers = SSL_get_ciphers(ssl);
    list[0] = '\0';
    for (i = 0, len = 0; i < sk_SSL_CIPHER_num(ciphers) && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ":" : "",
                                SSL_CIPHER_get_name(sk_SSL_CIPHER_value(ciphers, i)));
    put(&o, prefix, "ciphers", "%s", list);

    STACK_OF(SRTP_PROTECTION_PROFILE) *profiles = SSL_get_srtp_profiles(ssl);
    list[0] = '\0';
    for (i = 0, len = 0; i < sk_SRTP_PROTECTION_PROFILE_num(profiles) && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ":" : "",
                                sk_SRTP_PROTECTION_PROFILE_value(profiles, i)->name);
    put(&o, prefix, "srtp_profiles", "%s", list[0] ? list : "none");

    char key[96];
    X509 *own = SSL_get_certificate(ssl);
    key_name(own ? X509_get0_pubkey(own) : NULL, key, sizeof key);
    put(&o, prefix, "own_key", "%s", key);
    put(&o, prefix, "own_cert_signature", "%s",
        own ? OBJ_nid2sn(X509_get_signature_nid(own)) : "none");
    if (own != NULL) {
        /* What makes two self-signed certificates cost the same to send, hash and parse. */
        char cn[256];
        int cn_len = X509_NAME_get_text_by_NID(X509_get_subject_name(own), NID_commonName, cn,
                                               sizeof cn);
        int days = 0, secs = 0;
        ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(own), X509_get0_notAfter(own));
        /* Random serials are a byte shorter now and then (1 in 128): compare in 4-byte steps. */
        put(&o, prefix, "own_cert_shape",
            "v%ld, %d extensions, self-issued %d, CN %d chars, serial <= %d bytes, valid %d days",
            X509_get_version(own) + 1, X509_get_ext_count(own),
            X509_NAME_cmp(X509_get_subject_name(own), X509_get_issuer_name(own)) == 0, cn_len,
            (ASN1_STRING_length(X509_get0_serialNumber(own)) + 3) / 4 * 4, days);
    }
    return finish(&o);
}

int dtls_probe_negotiated(SSL *ssl, const char *prefix, char *buf, size_t cap)
{
    out_t o = {buf, cap, 0, 0};
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    if (cap == 0)
        return -1;
    buf[0] = '\0';

    put(&o, prefix, "version", "%s", SSL_get_version(ssl));
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    put(&o, prefix, "cipher", "%s", cipher ? SSL_CIPHER_get_name(cipher) : "none");
    int group = (int)SSL_get_negotiated_group(ssl);
    const char *gname = group ? SSL_group_to_name(ssl, group) : NULL;
    put(&o, prefix, "group", "%s", gname ? gname : "none");
    put(&o, prefix, "extms", "%d", (int)SSL_get_extms_support(ssl));

    /* No libssl call returns the configured groups list; the server sees the client's offer
       (supported_groups) and the groups both sides have, which together pin both lists. */
    char list[4096];
    size_t len = 0;
    int groups[64], i, n;
    n = SSL_is_server(ssl) ? (int)SSL_get1_groups(ssl, NULL) : 0;
    if (n > (int)(sizeof groups / sizeof groups[0]))
        n = (int)(sizeof groups / sizeof groups[0]);
    list[0] = '\0';
    if (n > 0)
        SSL_get1_groups(ssl, groups);
    for (i = 0; i < n && len < sizeof list; i++) {
        const char *g = SSL_group_to_name(ssl, groups[i]);
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ":" : "", g ? g : "?");
    }
    put(&o, prefix, "peer_groups", "%s", n > 0 ? list : "none");
    n = SSL_is_server(ssl) ? SSL_get_shared_group(ssl, -1) : 0;
    list[0] = '\0';
    for (i = 0, len = 0; i < n && len < sizeof list; i++) {
        const char *g = SSL_group_to_name(ssl, SSL_get_shared_group(ssl, i));
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ":" : "", g ? g : "?");
    }
    put(&o, prefix, "shared_groups", "%s", n > 0 ? list : "none");
    SRTP_PROTECTION_PROFILE *srtp = SSL_get_selected_srtp_profile(ssl);
    put(&o, prefix, "srtp_profile", "%s", srtp ? srtp->name : "none");
    put(&o, prefix, "session_reused", "%d", SSL_session_reused(ssl));
    /* On the client: whether the server sent a NewSessionTicket. */
    SSL_SESSION *sess = SSL_get0_session(ssl);
    put(&o, prefix, "ticket", "%d", sess ? SSL_SESSION_has_ticket(sess) : 0);
    put(&o, prefix, "ticket_lifetime_hint", "%lu",
        sess ? SSL_SESSION_get_ticket_lifetime_hint(sess) : 0UL);

    char key[96];
    X509 *peer = SSL_get0_peer_certificate(ssl);
    key_name(peer ? X509_get0_pubkey(peer) : NULL, key, sizeof key);
    put(&o, prefix, "peer_key", "%s", key);
    int sig_type = NID_undef, sig_hash = NID_undef;
    SSL_get_peer_signature_type_nid(ssl, &sig_type);
    SSL_get_peer_signature_nid(ssl, &sig_hash);
    put(&o, prefix, "peer_signature", "%s+%s", OBJ_nid2sn(sig_type), OBJ_nid2sn(sig_hash));
    put(&o, prefix, "data_mtu", "%zu", DTLS_get_data_mtu(ssl));
    /* With the session cache off this stays 0 however many handshakes the context ran. */
    put(&o, prefix, "sessions_cached", "%ld", (long)SSL_CTX_sess_number(ctx));
    return finish(&o);
}

/* The libssl this code runs on (the process's, which for dtls_ossl is the library's). */
unsigned long dtls_probe_openssl_version_num(void)
{
    return OpenSSL_version_num();
}
