"""cffi API-mode (out-of-line) build of ``dtls_ossl._openssl`` against the system OpenSSL.

The declarations are grouped in :class:`Section` objects with the four parts pyca/cryptography's
bindings use (INCLUDES, TYPES, FUNCTIONS, CUSTOMIZATIONS). Our own C symbols use the
``DtlsOssl_`` prefix so they are easy to tell apart from OpenSSL's.

Point the build at another OpenSSL with the standard ``CFLAGS``/``LDFLAGS``, e.g.
``CFLAGS=-I/opt/ossl/include LDFLAGS="-L/opt/ossl/lib64 -Wl,-rpath,/opt/ossl/lib64"``.

Run ``python build_ffi.py`` to compile in place for development.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from cffi import FFI


class Section(NamedTuple):
    """One header's worth of declarations (the cryptography ``_cffi_src`` layout)."""

    includes: str = ""
    types: str = ""
    functions: str = ""
    customizations: str = ""


SSL = Section(
    includes="""
#include <string.h>
#include <stdlib.h>
#include <openssl/opensslv.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/ssl.h>
""",
    types="""
typedef ... SSL_CTX;
typedef ... SSL;
typedef ... SSL_METHOD;
typedef ... SSL_CIPHER;
typedef ... X509;
typedef ... X509_VERIFY_PARAM;
typedef struct { const char *name; unsigned long id; ...; } SRTP_PROTECTION_PROFILE;

static const uint64_t SSL_OP_NO_QUERY_MTU;
static const uint64_t SSL_OP_NO_RENEGOTIATION;
static const uint64_t SSL_OP_NO_TICKET;
static const uint64_t SSL_OP_NO_COMPRESSION;
static const uint64_t SSL_OP_CIPHER_SERVER_PREFERENCE;
static const int SSL_VERIFY_PEER;
static const int SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
static const long SSL_SESS_CACHE_OFF;
static const int DTLS1_2_VERSION;
static const unsigned long X509_V_FLAG_CHECK_SS_SIGNATURE;
static const int OPENSSL_VERSION;
static const long OPENSSL_VERSION_NUMBER;

/* 1 when the headers define DTLS1_3_VERSION (OpenSSL 4.1+), else 0. */
static const int DtlsOssl_HAS_DTLS_1_3;
/* DTLS1_3_VERSION where it exists, else 0. */
static const int DtlsOssl_DTLS1_3_VERSION;

/* Status bits returned by every DtlsOssl_* I/O entry point. */
static const int DTLSOSSL_WIRE;            /* datagrams were framed into scratch->wire */
static const int DTLSOSSL_PLAIN;           /* plaintext records are in scratch->plain */
static const int DTLSOSSL_HANDSHAKE_DONE;  /* the handshake completed during this call */
static const int DTLSOSSL_PEER_CLOSED;     /* close_notify received */
static const int DTLSOSSL_FATAL;           /* OpenSSL failed; ssl_error and ERR queue say why */
static const int DTLSOSSL_ALERTS;          /* alerts were sent or received: conn->alerts */
static const int DTLSOSSL_DROPPED;         /* the datagram was not well-formed DTLS framing */
static const int DTLSOSSL_TIMER;           /* a retransmission timer is armed: conn->timeout_us */
static const int DTLSOSSL_RETRANSMITTED;   /* DTLSv1_handle_timeout retransmitted a flight */
static const int DTLSOSSL_OVERFLOW;        /* more output than scratch holds: grow, call drain */
static const int DTLSOSSL_CALLBACK;        /* a Python callback captured an exception */
static const int DTLSOSSL_TOO_BIG;         /* fast_send: empty or longer than the data MTU */
static const int DTLSOSSL_NO_SCRATCH;      /* fast_*: no scratch bound for the calling thread */

typedef struct {
    SSL *ssl;                       /* owned: freed by DtlsOssl_conn_free */
    void *handle;                   /* borrowed: ffi.new_handle kept alive by Python */
    size_t mtu;
    unsigned int initial_timeout_us;
    unsigned int max_timeout_us;
    int ssl_error;                  /* SSL_get_error of the last failing call */
    long timeout_us;                /* OpenSSL's remaining timer, -1 if none */
    int n_alerts;                   /* alerts seen during the last call (at most 8) */
    int alerts[8];                  /* 0x10000 if received | level << 8 | description */
    int callback_failed;
    unsigned long n_fast_received;  /* datagrams taken by DtlsOssl_fast_receive */
    unsigned long n_framed;         /* datagrams framed for sending, in total */
    ...;
} DtlsOssl_conn;

typedef struct {
    char *wire;            size_t wire_cap;  size_t wire_len;
    int *dgram_ends;       int dgram_cap;    int n_dgrams;
    char *plain;           size_t plain_cap; size_t plain_len;
    int *rec_ends;         int rec_cap;      int n_recs;
    int consumed;          /* batch entry points: datagrams/records processed */
    int dropped;           /* datagrams dropped for bad framing during this call */
    ...;
} DtlsOssl_scratch;
""",
    functions="""
const SSL_METHOD *DTLS_method(void);
const SSL_METHOD *DTLS_client_method(void);
const SSL_METHOD *DTLS_server_method(void);
SSL_CTX *SSL_CTX_new(const SSL_METHOD *);
void SSL_CTX_free(SSL_CTX *);
uint64_t SSL_CTX_set_options(SSL_CTX *, uint64_t);
int SSL_CTX_set_min_proto_version(SSL_CTX *, int);   /* macro */
int SSL_CTX_set_max_proto_version(SSL_CTX *, int);   /* macro */
int SSL_CTX_set_cipher_list(SSL_CTX *, const char *);
int SSL_CTX_set1_groups_list(SSL_CTX *, const char *);   /* macro */
long SSL_CTX_set_session_cache_mode(SSL_CTX *, long);    /* macro */
int SSL_CTX_set_tlsext_use_srtp(SSL_CTX *, const char *); /* returns 0 on success */
int SSL_CTX_check_private_key(const SSL_CTX *);
X509_VERIFY_PARAM *SSL_CTX_get0_param(SSL_CTX *);
int X509_VERIFY_PARAM_set_flags(X509_VERIFY_PARAM *, unsigned long);

SSL_CTX *SSL_get_SSL_CTX(const SSL *);
const char *SSL_get_version(const SSL *);
const SSL_CIPHER *SSL_get_current_cipher(const SSL *);
const char *SSL_CIPHER_get_name(const SSL_CIPHER *);
SRTP_PROTECTION_PROFILE *SSL_get_selected_srtp_profile(SSL *);
int SSL_export_keying_material(SSL *, unsigned char *, size_t, const char *, size_t,
                               const unsigned char *, size_t, int);
long SSL_get_verify_result(const SSL *);
const char *X509_verify_cert_error_string(long);
size_t DTLS_get_data_mtu(const SSL *);
const char *SSL_alert_desc_string_long(int);

unsigned long ERR_get_error(void);
void ERR_clear_error(void);
const char *ERR_lib_error_string(unsigned long);
const char *ERR_reason_error_string(unsigned long);
void ERR_error_string_n(unsigned long, char *, size_t);
const char *OpenSSL_version(int);
unsigned long OpenSSL_version_num(void);

/* Our helpers. Every I/O entry point does all its OpenSSL work in one C call: clear the error
   queue, do the operation, pump until want-read, frame what is to be sent into datagrams and
   read the retransmission timer. They return DTLSOSSL_* status bits. */
/* Once, at import: the ex_data index and the BIO method. 1 on success. */
int DtlsOssl_init(void);
int DtlsOssl_ctx_setup(SSL_CTX *, const unsigned char *, int, const unsigned char *, int, int);
DtlsOssl_conn *DtlsOssl_conn_new(SSL_CTX *, int, size_t, unsigned int, unsigned int, void *);
void DtlsOssl_conn_free(DtlsOssl_conn *);
int DtlsOssl_handshake(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_receive(DtlsOssl_conn *, DtlsOssl_scratch *, const char *, size_t);
/* Batches: sizes[i] is the length of datagram/payload i, the items lying end to end in data;
   n <= 65535. They stop early when Python must look at an outcome, and return the status bits
   | items done << 16 | (plaintext records or datagrams in scratch) << 32. */
int64_t DtlsOssl_receive_many(DtlsOssl_conn *, DtlsOssl_scratch *, const char *,
                              const int *, int);
/* After DTLSOSSL_HANDSHAKE_DONE, what HandshakeCompleted needs in one call: names[0] = the
   protocol version, names[1] = the cipher (static strings); the DTLS-SRTP keying material
   (RFC 5764 section 4.2) is exported into material (DTLSOSSL_MAX_SRTP_MATERIAL bytes of room).
   Returns the IANA SRTP profile id (0 = none) | data MTU << 16 | material length << 32 (0
   without SRTP or for an unknown profile), or -1 if the export failed (see the ERR queue). */
static const int DTLSOSSL_MAX_SRTP_MATERIAL;
int64_t DtlsOssl_established(DtlsOssl_conn *, const char **, char *);
/* The per-record paths of an established connection, called with the GIL held (see
   DTLSOSSL_KEEP_GIL). They use the scratch bound to the connection, and only from the thread
   that created it (else -DTLSOSSL_NO_SCRATCH: bind this thread's and call again), which saves
   Python a thread-local lookup per call. They return the length of the one datagram (send) or
   plaintext record (receive) in that scratch when that is the whole outcome, else minus the
   status bits (<= 0). fast_send refuses an empty payload or one above the data MTU
   (-DTLSOSSL_TOO_BIG). */
void DtlsOssl_scratch_claim(DtlsOssl_scratch *);
void DtlsOssl_bind_scratch(DtlsOssl_conn *, DtlsOssl_scratch *);
long DtlsOssl_fast_send(DtlsOssl_conn *, const char *, size_t);
long DtlsOssl_fast_receive(DtlsOssl_conn *, const char *, size_t);
int64_t DtlsOssl_send_many(DtlsOssl_conn *, DtlsOssl_scratch *, const char *,
                           const int *, int);
int DtlsOssl_handle_timeout(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_shutdown(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_drain(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_prime_cookie_exchange(DtlsOssl_conn *);
size_t DtlsOssl_pending(DtlsOssl_conn *);
int DtlsOssl_well_formed(const unsigned char *, size_t);

/* Python callbacks (API-mode extern "Python"); the handle is the connection's callback state. */
extern "Python" int DtlsOssl_py_check_peer(void *, const unsigned char *, int);
extern "Python" void DtlsOssl_py_keylog(void *, const char *);
""",
    customizations=r"""
/* extern "Python" callbacks are generated further down by cffi. */
static int DtlsOssl_py_check_peer(void *, const unsigned char *, int);
static void DtlsOssl_py_keylog(void *, const char *);

#ifdef DTLS1_3_VERSION
static const int DtlsOssl_HAS_DTLS_1_3 = 1;
static const int DtlsOssl_DTLS1_3_VERSION = DTLS1_3_VERSION;
#else
static const int DtlsOssl_HAS_DTLS_1_3 = 0;
static const int DtlsOssl_DTLS1_3_VERSION = 0;
#endif

#define DTLSOSSL_WIRE 0x1
#define DTLSOSSL_PLAIN 0x2
#define DTLSOSSL_HANDSHAKE_DONE 0x4
#define DTLSOSSL_PEER_CLOSED 0x8
#define DTLSOSSL_FATAL 0x10
#define DTLSOSSL_ALERTS 0x20
#define DTLSOSSL_DROPPED 0x40
#define DTLSOSSL_TIMER 0x80
#define DTLSOSSL_RETRANSMITTED 0x100
#define DTLSOSSL_OVERFLOW 0x200
#define DTLSOSSL_CALLBACK 0x400
#define DTLSOSSL_TOO_BIG 0x800
#define DTLSOSSL_NO_SCRATCH 0x1000
#define DTLSOSSL_MAX_SRTP_MATERIAL 88   /* 2 * (32 + 12): SRTP_AEAD_AES_256_GCM */

/* A DTLS record header: type(1) version(2) epoch(2) seq(6) length(2). RFC 6347 §4.1. */
#define DTLSOSSL_HDR 13

typedef struct {
    char *wire;            size_t wire_cap;  size_t wire_len;
    int *dgram_ends;       int dgram_cap;    int n_dgrams;
    char *plain;           size_t plain_cap; size_t plain_len;
    int *rec_ends;         int rec_cap;      int n_recs;
    int consumed;
    int dropped;
    CRYPTO_THREAD_ID owner;   /* the thread that created it: DtlsOssl_scratch_claim */
} DtlsOssl_scratch;

typedef struct {
    SSL *ssl;
    void *handle;
    size_t mtu;
    unsigned int initial_timeout_us;
    unsigned int max_timeout_us;
    int ssl_error;
    long timeout_us;
    int n_alerts;
    int alerts[8];
    int callback_failed;
    unsigned long n_fast_received;
    unsigned long n_framed;
    size_t data_mtu;        /* largest send() payload: DTLS_get_data_mtu once established */
    size_t min_encrypted;   /* shortest possible protected record body; 0 = cipher unknown */
    BIO *rbio;   /* borrowed: owned by ssl after SSL_set_bio */
    BIO *wbio;   /* borrowed: owned by ssl after SSL_set_bio */
    /* The datagram BIOs (see DtlsOssl_bio_*) work on these, set for the length of one call. */
    const char *in;           /* borrowed: the datagram OpenSSL reads, in_left bytes left */
    size_t in_left;
    DtlsOssl_scratch *out;    /* borrowed: OpenSSL's records go to out->wire after wire_len */
    size_t unframed;          /* bytes written there and not yet framed into datagrams */
    char *spill;              /* owned: output that did not fit out->wire (or with no out) */
    size_t spill_len, spill_cap;
    DtlsOssl_scratch *sc;     /* borrowed (Python keeps it alive): the fast paths' scratch */
} DtlsOssl_conn;

static int DtlsOssl_conn_index = -1;

static DtlsOssl_conn *DtlsOssl_conn_of(const SSL *ssl)
{
    return (DtlsOssl_conn *)SSL_get_ex_data(ssl, DtlsOssl_conn_index);
}

/* The transport: a pair of datagram BIOs instead of memory BIOs. The read BIO hands OpenSSL
   the one datagram being fed, straight from the caller's bytes (nothing is copied into a BIO
   first, and a datagram never merges with the next); the write BIO appends each record to the
   thread's scratch buffer, where DtlsOssl_frame packs whole records into datagrams. Neither
   keeps a buffer between calls, so an idle connection holds no BIO memory, and the per-record
   path saves two copies and the memory BIO's bookkeeping. */
static BIO_METHOD *DtlsOssl_bio_method = NULL;   /* owned: created once, never freed */

static int DtlsOssl_bio_read(BIO *b, char *out, int outl)
{
    DtlsOssl_conn *c = (DtlsOssl_conn *)BIO_get_data(b);
    size_t n;
    BIO_clear_retry_flags(b);
    if (c == NULL || c->in_left == 0 || outl <= 0) {
        BIO_set_retry_read(b);   /* no datagram: "try again later", like an empty memory BIO */
        return -1;
    }
    n = c->in_left < (size_t)outl ? c->in_left : (size_t)outl;
    memcpy(out, c->in, n);
    c->in += n;
    c->in_left -= n;
    return (int)n;
}

static int DtlsOssl_bio_write(BIO *b, const char *data, int len)
{
    DtlsOssl_conn *c = (DtlsOssl_conn *)BIO_get_data(b);
    DtlsOssl_scratch *s;
    size_t n = len > 0 ? (size_t)len : 0;
    BIO_clear_retry_flags(b);
    if (c == NULL || len < 0)
        return -1;
    s = c->out;
    if (s != NULL && c->spill_len == 0 && s->wire_cap - s->wire_len - c->unframed >= n) {
        memcpy(s->wire + s->wire_len + c->unframed, data, n);
        c->unframed += n;
        return len;
    }
    /* No room (or no call in progress): keep it, in order, until DtlsOssl_drain. */
    if (c->spill_cap - c->spill_len < n) {
        size_t cap = 2 * c->spill_cap + n + 4096;
        char *p = realloc(c->spill, cap);
        if (p == NULL)
            return -1;
        c->spill = p;
        c->spill_cap = cap;
    }
    memcpy(c->spill + c->spill_len, data, n);
    c->spill_len += n;
    return len;
}

static long DtlsOssl_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    DtlsOssl_conn *c = (DtlsOssl_conn *)BIO_get_data(b);
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_PENDING:
        if (c == NULL)
            return 0;
        return (long)(b == c->rbio ? c->in_left : c->unframed + c->spill_len);
    case BIO_CTRL_WPENDING:
        return 0;
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    case BIO_CTRL_RESET:
        if (c != NULL && b == c->rbio)
            c->in_left = 0;
        return 1;
    case BIO_CTRL_GET_CLOSE:
        return BIO_get_shutdown(b);
    case BIO_CTRL_SET_CLOSE:
        BIO_set_shutdown(b, (int)num);
        return 1;
    default:
        return 0;   /* as a memory BIO answers the BIO_CTRL_DGRAM_* queries */
    }
}

static int DtlsOssl_bio_create(BIO *b)
{
    BIO_set_data(b, NULL);
    BIO_set_init(b, 1);
    return 1;
}

static int DtlsOssl_bio_destroy(BIO *b)
{
    if (b != NULL)
        BIO_set_data(b, NULL);
    return 1;
}

/* Accept a well-formed certificate whose only faults are the ones a self-signed WebRTC
   certificate always has (no trusted issuer) or may have (validity period vs. our clock): the
   SDP fingerprint, checked next, is what authenticates it (RFC 8122 §5, RFC 8827 §6.5).
   Signature and format errors still fail. */
static int DtlsOssl_verify_cb(int ok, X509_STORE_CTX *store)
{
    if (ok)
        return 1;
    switch (X509_STORE_CTX_get_error(store)) {
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_INVALID_PURPOSE:
        X509_STORE_CTX_set_error(store, X509_V_OK);
        return 1;
    default:
        return 0;
    }
}

/* Runs once per peer certificate: OpenSSL's structural checks, then the fingerprint check in
   Python (inside the handshake, so a mismatch fails it with an alert). */
static int DtlsOssl_cert_verify_cb(X509_STORE_CTX *store, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    DtlsOssl_conn *c = ssl ? DtlsOssl_conn_of(ssl) : NULL;
    X509 *leaf;
    unsigned char *der = NULL;
    int n, r;
    (void)arg;
    if (c == NULL || c->handle == NULL) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    if (X509_verify_cert(store) <= 0)
        return 0;
    leaf = X509_STORE_CTX_get0_cert(store);
    n = leaf ? i2d_X509(leaf, &der) : -1;
    if (n <= 0) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    r = DtlsOssl_py_check_peer(c->handle, der, n);
    OPENSSL_free(der);
    if (r < 0)
        c->callback_failed = 1;
    if (r != 1) {
        /* CERT_REJECTED makes OpenSSL send bad_certificate (RFC 5246 §7.2.2). */
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    return 1;
}

static void DtlsOssl_keylog_cb(const SSL *ssl, const char *line)
{
    DtlsOssl_conn *c = DtlsOssl_conn_of(ssl);
    if (c != NULL && c->handle != NULL)
        DtlsOssl_py_keylog(c->handle, line);
}

static void DtlsOssl_info_cb(const SSL *ssl, int where, int ret)
{
    DtlsOssl_conn *c;
    if (!(where & SSL_CB_ALERT))
        return;
    c = DtlsOssl_conn_of(ssl);
    if (c != NULL && c->n_alerts < 8)
        c->alerts[c->n_alerts++] = ((where & SSL_CB_READ) ? 0x10000 : 0) | (ret & 0xffff);
}

/* Our retransmission schedule (DTLS_set_timer_cb(3)): configured initial value, doubling up to
   the configured cap. OpenSSL 3.0 counts values under 15 ms as already expired, so the
   configuration refuses them. */
static unsigned int DtlsOssl_timer_cb(SSL *ssl, unsigned int timer_us)
{
    DtlsOssl_conn *c = DtlsOssl_conn_of(ssl);
    unsigned int init = c ? c->initial_timeout_us : 1000000u;
    unsigned int cap = c ? c->max_timeout_us : 60000000u;
    if (timer_us == 0)
        return init;
    if (timer_us >= cap / 2)
        return cap;
    return timer_us * 2;
}

/* Cookie exchange is stateless and done in Python (dtls_ossl.cookies) before an SSL object
   exists; OpenSSL only sees it on connections primed by DtlsOssl_prime_cookie_exchange, where
   the cookie was already verified. */
static int DtlsOssl_cookie_generate_cb(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    (void)ssl;
    cookie[0] = 0;
    *len = 1;
    return 1;
}

static int DtlsOssl_cookie_verify_cb(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    (void)ssl;
    (void)cookie;
    (void)len;
    return 1;
}

/* Make a fresh server SSL behave as if it had itself sent the HelloVerifyRequest our stateless
   layer sent: switch on SSL_OP_COOKIE_EXCHANGE and feed a minimal cookie-less ClientHello
   (message_seq 0). OpenSSL answers it with a HelloVerifyRequest, which is discarded, and then
   expects the client's second ClientHello (message_seq 1), cookie included - fragmented or not,
   unlike DTLSv1_listen(3). RFC 6347 §4.2.6 keeps the first ClientHello and the
   HelloVerifyRequest out of the handshake hash, so the synthetic hello changes nothing that
   either side verifies. Returns 1 when OpenSSL is waiting for the second ClientHello. */
int DtlsOssl_prime_cookie_exchange(DtlsOssl_conn *c)
{
    static const unsigned char hello[] = {
        22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12 + 42,              /* record header */
        1, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 42,                            /* handshake header */
        0xfe, 0xfd,                                                      /* client_version */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                  /* random */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0,                                                               /* session_id */
        0,                                                               /* no cookie */
        0, 2, 0xc0, 0x2b,                                                /* cipher_suites */
        1, 0,                                                            /* compression */
    };
    int r;
    if (ERR_peek_error() != 0)
        ERR_clear_error();
    SSL_set_options(c->ssl, SSL_OP_COOKIE_EXCHANGE);
    c->in = (const char *)hello;
    c->in_left = sizeof(hello);
    c->out = NULL;
    r = SSL_do_handshake(c->ssl);
    c->in = NULL;
    c->in_left = 0;
    free(c->spill);     /* the HelloVerifyRequest: ours already went out */
    c->spill = NULL;
    c->spill_len = c->spill_cap = 0;
    c->n_alerts = 0;
    if (r > 0 || SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        return 0;
    }
    return 1;
}

int DtlsOssl_init(void)
{
    BIO_METHOD *m;
    if (DtlsOssl_conn_index < 0)
        DtlsOssl_conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (DtlsOssl_bio_method == NULL) {
        m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "dtls_ossl datagram");
        if (m == NULL || !BIO_meth_set_write(m, DtlsOssl_bio_write)
            || !BIO_meth_set_read(m, DtlsOssl_bio_read) || !BIO_meth_set_ctrl(m, DtlsOssl_bio_ctrl)
            || !BIO_meth_set_create(m, DtlsOssl_bio_create)
            || !BIO_meth_set_destroy(m, DtlsOssl_bio_destroy)) {
            BIO_meth_free(m);
            return 0;
        }
        DtlsOssl_bio_method = m;
    }
    return DtlsOssl_conn_index >= 0;
}

int DtlsOssl_ctx_setup(SSL_CTX *ctx, const unsigned char *cert, int cert_len,
                       const unsigned char *key, int key_len, int keylog)
{
    const unsigned char *p = key;
    EVP_PKEY *pkey;
    int ok;
    if (DtlsOssl_conn_index < 0 || DtlsOssl_bio_method == NULL)
        return 0;   /* DtlsOssl_init failed or did not run */
    if (SSL_CTX_use_certificate_ASN1(ctx, cert_len, cert) != 1)
        return 0;
    pkey = d2i_AutoPrivateKey(NULL, &p, key_len);   /* owned: freed below */
    if (pkey == NULL)
        return 0;
    ok = SSL_CTX_use_PrivateKey(ctx, pkey);         /* takes its own reference */
    EVP_PKEY_free(pkey);
    if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1)
        return 0;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       DtlsOssl_verify_cb);
    SSL_CTX_set_cert_verify_callback(ctx, DtlsOssl_cert_verify_cb, NULL);
    SSL_CTX_set_info_callback(ctx, DtlsOssl_info_cb);
    if (keylog)
        SSL_CTX_set_keylog_callback(ctx, DtlsOssl_keylog_cb);
    SSL_CTX_set_cookie_generate_cb(ctx, DtlsOssl_cookie_generate_cb);
    SSL_CTX_set_cookie_verify_cb(ctx, DtlsOssl_cookie_verify_cb);
    return 1;
}

DtlsOssl_conn *DtlsOssl_conn_new(SSL_CTX *ctx, int is_server, size_t mtu,
                                 unsigned int initial_us, unsigned int max_us, void *handle)
{
    DtlsOssl_conn *c = calloc(1, sizeof(*c));     /* owned: freed by DtlsOssl_conn_free */
    BIO *rbio = NULL, *wbio = NULL;
    if (c == NULL)
        return NULL;
    c->ssl = SSL_new(ctx);                         /* takes a reference to ctx */
    rbio = BIO_new(DtlsOssl_bio_method);
    wbio = BIO_new(DtlsOssl_bio_method);
    if (c->ssl == NULL || rbio == NULL || wbio == NULL)
        goto fail;
    BIO_set_data(rbio, c);
    BIO_set_data(wbio, c);
    SSL_set_bio(c->ssl, rbio, wbio);               /* the SSL owns both BIOs from here */
    c->rbio = rbio;
    c->wbio = wbio;
    rbio = wbio = NULL;
    c->mtu = mtu;
    c->initial_timeout_us = initial_us;
    c->max_timeout_us = max_us;
    c->handle = handle;
    c->timeout_us = -1;
    if (!SSL_set_ex_data(c->ssl, DtlsOssl_conn_index, c))
        goto fail;
    /* Our BIOs have no path MTU to query (no more than memory BIOs): without both of these
       OpenSSL falls back to a 256-byte MTU. */
    SSL_set_options(c->ssl, SSL_OP_NO_QUERY_MTU);
    if (!SSL_set_mtu(c->ssl, (long)mtu))
        goto fail;
    DTLS_set_timer_cb(c->ssl, DtlsOssl_timer_cb);
    if (is_server)
        SSL_set_accept_state(c->ssl);
    else
        SSL_set_connect_state(c->ssl);
    return c;
fail:
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(c->ssl);
    free(c);
    return NULL;
}

void DtlsOssl_conn_free(DtlsOssl_conn *c)
{
    if (c == NULL)
        return;
    if (c->ssl != NULL) {
        SSL_set_ex_data(c->ssl, DtlsOssl_conn_index, NULL);
        SSL_free(c->ssl);   /* and the BIOs */
    }
    free(c->spill);
    free(c);
}

/* Untrusted input: 1 if data is a sequence of complete DTLS records with a DTLS version and a
   known content type, else 0. Cannot fail. */
int DtlsOssl_well_formed(const unsigned char *data, size_t len)
{
    size_t off = 0;
    if (len < DTLSOSSL_HDR || len > 65535)
        return 0;
    while (off < len) {
        size_t rl;
        if (len - off < DTLSOSSL_HDR)
            return 0;
        if (data[off] < 20 || data[off] > 26 || data[off + 1] != 0xfe)
            return 0;
        rl = ((size_t)data[off + 11] << 8) | data[off + 12];
        if (rl > len - off - DTLSOSSL_HDR)
            return 0;
        off += DTLSOSSL_HDR + rl;
    }
    return 1;
}

/* Pack the n bytes of whole records just written after s->wire_len into datagrams of at most
   mtu bytes, splitting on record headers: a record is never split. */
static void DtlsOssl_frame(DtlsOssl_conn *c, DtlsOssl_scratch *s, size_t n)
{
    const unsigned char *w = (const unsigned char *)s->wire;
    /* s->wire_len is the start of the datagram being packed. */
    size_t off = s->wire_len, stop = off + n;
    while (off < stop) {
        size_t end = off + DTLSOSSL_HDR;
        if (stop - off >= DTLSOSSL_HDR)
            end += ((size_t)w[off + 11] << 8) | w[off + 12];
        if (end > stop)
            end = stop;
        if (end - s->wire_len > c->mtu && off > s->wire_len) {
            s->dgram_ends[s->n_dgrams++] = (int)off;
            s->wire_len = off;
            c->n_framed++;
        }
        off = end;
    }
    s->dgram_ends[s->n_dgrams++] = (int)off;
    s->wire_len = off;
    c->n_framed++;
}

/* After DTLSOSSL_OVERFLOW (the output did not fit the scratch buffer): Python has collected
   the datagrams and grown the buffer to DtlsOssl_pending bytes; move the rest there. */
int DtlsOssl_drain(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    size_t n = c->spill_len;
    if (n == 0)
        return 0;
    if (s->wire_cap - s->wire_len < n
        || s->n_dgrams + (int)(n / DTLSOSSL_HDR) + 1 > s->dgram_cap)
        return DTLSOSSL_OVERFLOW;
    memcpy(s->wire + s->wire_len, c->spill, n);
    free(c->spill);
    c->spill = NULL;
    c->spill_len = c->spill_cap = 0;
    DtlsOssl_frame(c, s, n);
    return DTLSOSSL_WIRE;
}

size_t DtlsOssl_pending(DtlsOssl_conn *c)
{
    return c->spill_len;
}

/* Start a call: empty outputs, the write BIO pointed at this thread's scratch buffer. */
static void DtlsOssl_reset(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    s->wire_len = 0;
    s->n_dgrams = 0;
    s->plain_len = 0;
    s->n_recs = 0;
    s->consumed = 0;
    s->dropped = 0;
    c->n_alerts = 0;
    c->ssl_error = 0;
    c->out = s;
    c->unframed = 0;
    /* ERR_clear_error walks all 16 slots (~800 instructions in 3.0); peeking is far cheaper and
       the queue is almost always empty. */
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* End a call: frame the output, read the timer, detach the scratch buffer (it belongs to the
   calling thread, and the next call may come from another one). */
static int DtlsOssl_finish(DtlsOssl_conn *c, DtlsOssl_scratch *s, int flags)
{
    struct timeval tv;
    if (c->unframed > 0) {
        DtlsOssl_frame(c, s, c->unframed);
        c->unframed = 0;
        flags |= DTLSOSSL_WIRE;
    }
    if (c->spill_len > 0)
        flags |= DTLSOSSL_OVERFLOW;
    c->out = NULL;
    if (DTLSv1_get_timeout(c->ssl, &tv) == 1) {
        c->timeout_us = (long)tv.tv_sec * 1000000L + (long)tv.tv_usec;
        flags |= DTLSOSSL_TIMER;
    } else {
        c->timeout_us = -1;
    }
    if (c->n_alerts)
        flags |= DTLSOSSL_ALERTS;
    if (c->callback_failed)
        flags |= DTLSOSSL_CALLBACK;
    return flags;
}

static int DtlsOssl_failed(DtlsOssl_conn *c, int r)
{
    c->ssl_error = SSL_get_error(c->ssl, r);
    switch (c->ssl_error) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return DTLSOSSL_PEER_CLOSED;
    default:
        return DTLSOSSL_FATAL;
    }
}

/* Drive the handshake, then read every plaintext record until OpenSSL wants more input. */
static int DtlsOssl_pump(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    int flags = 0, r;
    if (!SSL_is_init_finished(c->ssl)) {
        r = SSL_do_handshake(c->ssl);
        if (r <= 0)
            return DtlsOssl_failed(c, r);
        flags |= DTLSOSSL_HANDSHAKE_DONE;
    }
    for (;;) {
        /* Room for one full record, so a record is never split across two reads. */
        if (s->plain_cap - s->plain_len < 16384 + 2048 || s->n_recs >= s->rec_cap)
            return flags | DTLSOSSL_OVERFLOW;
        r = SSL_read(c->ssl, s->plain + s->plain_len, (int)(s->plain_cap - s->plain_len));
        if (r > 0) {
            s->plain_len += (size_t)r;
            s->rec_ends[s->n_recs++] = (int)s->plain_len;
            flags |= DTLSOSSL_PLAIN;
            /* Nothing buffered and the datagram used up: another SSL_read would only fail with
               want-read, at the cost of a trip through the record layer and the error queue. */
            if (c->in_left == 0 && !SSL_has_pending(c->ssl))
                return flags;
            continue;
        }
        r = DtlsOssl_failed(c, r);
        if (r == DTLSOSSL_PEER_CLOSED)
            SSL_shutdown(c->ssl);   /* answer with our close_notify */
        return flags | r;
    }
}

int DtlsOssl_handshake(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    DtlsOssl_reset(c, s);
    return DtlsOssl_finish(c, s, DtlsOssl_pump(c, s));
}

/* The smallest body a protected (epoch > 0) record can have under the cipher in use: explicit
   nonce + tag for GCM/CCM, the tag for ChaCha20-Poly1305, IV + one block for CBC. OpenSSL 3.0
   answers a shorter AEAD record with a fatal internal_error instead of discarding it
   (openssl/openssl#25290), which would let one forged datagram kill an association. */
static size_t DtlsOssl_min_encrypted(DtlsOssl_conn *c)
{
    const SSL_CIPHER *cipher;
    if (c->min_encrypted)
        return c->min_encrypted;
    cipher = SSL_get_current_cipher(c->ssl);
    if (cipher == NULL)
        cipher = SSL_get_pending_cipher(c->ssl);
    if (cipher == NULL)
        return 24;   /* not negotiated yet: the common AEAD case */
    if (SSL_CIPHER_get_cipher_nid(cipher) == NID_chacha20_poly1305)
        c->min_encrypted = 16;
    else if (SSL_CIPHER_is_aead(cipher))
        c->min_encrypted = 24;
    else
        c->min_encrypted = 32;
    return c->min_encrypted;
}

/* Untrusted input: well_formed plus no protected record shorter than the cipher allows. */
static int DtlsOssl_acceptable(DtlsOssl_conn *c, const unsigned char *data, size_t len)
{
    size_t off = 0;
    if (!DtlsOssl_well_formed(data, len))
        return 0;
    while (off < len) {
        size_t rl = ((size_t)data[off + 11] << 8) | data[off + 12];
        if ((data[off + 3] | data[off + 4]) && rl < DtlsOssl_min_encrypted(c))
            return 0;
        off += DTLSOSSL_HDR + rl;
    }
    return 1;
}

static int DtlsOssl_feed(DtlsOssl_conn *c, DtlsOssl_scratch *s, const char *data,
                         size_t len)
{
    int flags;
    if (!DtlsOssl_acceptable(c, (const unsigned char *)data, len)) {
        s->dropped++;
        return DTLSOSSL_DROPPED;
    }
    c->in = data;   /* the read BIO hands OpenSSL exactly this datagram */
    c->in_left = len;
    flags = DtlsOssl_pump(c, s);
    /* One datagram per read: never let leftovers of a bad datagram poison the next one. */
    c->in = NULL;
    c->in_left = 0;
    return flags;
}

int DtlsOssl_receive(DtlsOssl_conn *c, DtlsOssl_scratch *s, const char *data, size_t len)
{
    DtlsOssl_reset(c, s);
    return DtlsOssl_finish(c, s, DtlsOssl_feed(c, s, data, len));
}

void DtlsOssl_scratch_claim(DtlsOssl_scratch *s)
{
    s->owner = CRYPTO_THREAD_get_current_id();
}

void DtlsOssl_bind_scratch(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    c->sc = s;
}

/* The connection's scratch, if the calling thread may use it. */
static DtlsOssl_scratch *DtlsOssl_own_scratch(DtlsOssl_conn *c)
{
    DtlsOssl_scratch *s = c->sc;
    if (s == NULL || !CRYPTO_THREAD_compare_id(s->owner, CRYPTO_THREAD_get_current_id()))
        return NULL;
    return s;
}

long DtlsOssl_fast_receive(DtlsOssl_conn *c, const char *data, size_t len)
{
    DtlsOssl_scratch *s = DtlsOssl_own_scratch(c);
    int flags;
    if (s == NULL)
        return -(long)DTLSOSSL_NO_SCRATCH;
    c->n_fast_received++;
    DtlsOssl_reset(c, s);
    flags = DtlsOssl_finish(c, s, DtlsOssl_feed(c, s, data, len));
    if (flags == DTLSOSSL_PLAIN && s->n_recs == 1)
        return (long)s->plain_len;   /* > 0: SSL_read never returns an empty record */
    return -(long)flags;
}

/* Feed the datagrams of a batch. Stops after the first datagram whose outcome needs Python
   (anything but plaintext or a drop). */
int64_t DtlsOssl_receive_many(DtlsOssl_conn *c, DtlsOssl_scratch *s, const char *data,
                              const int *sizes, int n)
{
    int i, flags = 0, dropped = 0;
    size_t start = 0;
    DtlsOssl_reset(c, s);
    for (i = 0; i < n; i++) {
        int f = DtlsOssl_feed(c, s, data + start, (size_t)sizes[i]);
        start += (size_t)sizes[i];
        if (f & DTLSOSSL_DROPPED)
            dropped++;
        flags |= f & ~DTLSOSSL_DROPPED;
        if ((f & ~(DTLSOSSL_PLAIN | DTLSOSSL_DROPPED)) || c->n_alerts || c->callback_failed
            || s->plain_cap - s->plain_len < 16384 + 2048 || s->n_recs >= s->rec_cap - 1) {
            i++;
            break;
        }
    }
    s->consumed = i;
    if (dropped)
        flags |= DTLSOSSL_DROPPED;
    flags = DtlsOssl_finish(c, s, flags);
    return (int64_t)flags | ((int64_t)i << 16) | ((int64_t)s->n_recs << 32);
}

long DtlsOssl_fast_send(DtlsOssl_conn *c, const char *data, size_t len)
{
    DtlsOssl_scratch *s = DtlsOssl_own_scratch(c);
    int r, flags = 0;
    if (len == 0 || len > c->data_mtu)
        return -(long)DTLSOSSL_TOO_BIG;   /* nothing sent: Python raises PayloadSizeError */
    if (s == NULL)
        return -(long)DTLSOSSL_NO_SCRATCH;
    DtlsOssl_reset(c, s);
    r = SSL_write(c->ssl, data, (int)len);
    if (r <= 0)
        flags = DtlsOssl_failed(c, r);
    flags = DtlsOssl_finish(c, s, flags);
    if (flags == DTLSOSSL_WIRE && s->n_dgrams == 1)
        return (long)s->wire_len;   /* > 0 */
    return -(long)flags;
}

int64_t DtlsOssl_send_many(DtlsOssl_conn *c, DtlsOssl_scratch *s, const char *data,
                           const int *sizes, int n)
{
    int i, r, flags = 0;
    size_t start = 0;
    DtlsOssl_reset(c, s);
    for (i = 0; i < n; i++) {
        r = SSL_write(c->ssl, data + start, sizes[i]);
        start += (size_t)sizes[i];
        if (r <= 0) {
            flags |= DtlsOssl_failed(c, r);
            i++;
            break;
        }
        /* Stop while the next record surely fits: Python collects and calls again. */
        if (s->wire_len + c->unframed + 20000 > s->wire_cap || c->spill_len > 0) {
            i++;
            break;
        }
    }
    s->consumed = i;
    flags = DtlsOssl_finish(c, s, flags);
    return (int64_t)flags | ((int64_t)i << 16) | ((int64_t)s->n_dgrams << 32);
}

int DtlsOssl_handle_timeout(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    int r, flags = 0;
    DtlsOssl_reset(c, s);
    r = DTLSv1_handle_timeout(c->ssl);
    if (r > 0)
        flags |= DTLSOSSL_RETRANSMITTED;
    else if (r < 0)
        flags |= DTLSOSSL_FATAL;
    return DtlsOssl_finish(c, s, flags);
}

int DtlsOssl_shutdown(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    DtlsOssl_reset(c, s);
    if (SSL_is_init_finished(c->ssl))
        (void)SSL_shutdown(c->ssl);
    return DtlsOssl_finish(c, s, 0) & ~DTLSOSSL_TIMER;
}

int64_t DtlsOssl_established(DtlsOssl_conn *c, const char **names, char *material)
{
    static const char label[] = "EXTRACTOR-dtls_srtp";
    const SRTP_PROTECTION_PROFILE *profile = SSL_get_selected_srtp_profile(c->ssl);
    const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
    unsigned long id = profile != NULL ? profile->id : 0;
    size_t n;
    names[0] = SSL_get_version(c->ssl);
    names[1] = cipher != NULL ? SSL_CIPHER_get_name(cipher) : "(NONE)";
    /* 2 * (master key + master salt): RFC 5764 section 4.1.2, RFC 7714 section 12. Python checks
       these lengths against SrtpProfile. */
    switch (id) {
    case 1: /* SRTP_AES128_CM_SHA1_80 */
    case 2: /* SRTP_AES128_CM_SHA1_32 */
        n = 2 * (16 + 14);
        break;
    case 7: /* SRTP_AEAD_AES_128_GCM */
        n = 2 * (16 + 12);
        break;
    case 8: /* SRTP_AEAD_AES_256_GCM */
        n = 2 * (32 + 12);
        break;
    default:
        n = 0;
    }
    if (n > 0) {
        if (ERR_peek_error() != 0)
            ERR_clear_error();
        if (SSL_export_keying_material(c->ssl, (unsigned char *)material, n, label,
                                       sizeof(label) - 1, NULL, 0, 0) != 1)
            return -1;
    }
    c->data_mtu = DTLS_get_data_mtu(c->ssl);
    return (int64_t)(id & 0xffff) | ((int64_t)(c->data_mtu & 0xffff) << 16) | ((int64_t)n << 32);
}

/* cffi wraps every call in Py_BEGIN_ALLOW_THREADS / Py_END_ALLOW_THREADS. For the per-record
   paths of an established connection (about 1 us of OpenSSL work) releasing and re-taking the
   GIL costs a noticeable share, so the wrappers of DtlsOssl_fast_* functions keep it; they are
   recognised by name (__func__ is "_cffi_f_DtlsOssl_fast_..."), a test that GCC and Clang fold
   at compile time. Every other call, the handshake above all (ECDHE and signatures: hundreds
   of us), still runs without the GIL. If a cffi release stops using these macros, all calls
   simply release the GIL again. */
#define DTLSOSSL_KEEP_GIL(f)                                                            \
    (sizeof(f) > sizeof("_cffi_f_DtlsOssl_fast_") && f[0] == '_' && f[1] == 'c'           \
     && f[7] == '_' && f[8] == 'D' && f[16] == '_' && f[17] == 'f' && f[18] == 'a'         \
     && f[19] == 's' && f[20] == 't' && f[21] == '_')
#if defined(Py_BEGIN_ALLOW_THREADS) && defined(Py_END_ALLOW_THREADS)
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS                                                          \
    {                                                                                   \
        PyThreadState *_save = DTLSOSSL_KEEP_GIL(__func__) ? NULL : PyEval_SaveThread();
#define Py_END_ALLOW_THREADS                                                            \
    if (_save != NULL)                                                                  \
        PyEval_RestoreThread(_save);                                                    \
    }
#endif
""",
)

SECTIONS = [SSL]

_HINT = (
    "dtls_ossl needs the OpenSSL development headers (openssl/ssl.h): install libssl-dev on "
    "Debian/Ubuntu, openssl-devel on Fedora/RHEL, or point CFLAGS/LDFLAGS at an OpenSSL >= 3.0"
)


def _pkg_config() -> tuple[list[str], list[str], list[str]]:
    """Return (include_dirs, library_dirs, extra_link_args) from pkg-config, or empty lists."""
    exe = shutil.which("pkg-config")
    if exe is None:
        return [], [], []
    try:
        cflags = subprocess.run(
            [exe, "--cflags-only-I", "libssl", "libcrypto"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        libs = subprocess.run(
            [exe, "--libs-only-L", "libssl", "libcrypto"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except subprocess.CalledProcessError:
        return [], [], []
    return [f[2:] for f in cflags], [f[2:] for f in libs], []


def _check_headers(include_dirs: list[str]) -> None:
    """Stop with one clear line when openssl/ssl.h cannot be found anywhere we would look."""
    candidates = [*include_dirs, "/usr/include", "/usr/local/include"]
    for flag in os.environ.get("CFLAGS", "").split() + os.environ.get("CPPFLAGS", "").split():
        if flag.startswith("-I"):
            candidates.append(flag[2:])
    if os.environ.get("CPATH"):
        candidates.extend(os.environ["CPATH"].split(os.pathsep))
    if not any((Path(d) / "openssl" / "ssl.h").is_file() for d in candidates):
        sys.stderr.write(f"error: {_HINT}\n")
        raise SystemExit(1)


def _make_builder() -> FFI:
    include_dirs, library_dirs, extra_link_args = _pkg_config()
    _check_headers(include_dirs)
    builder = FFI()
    builder.cdef("\n".join(s.types for s in SECTIONS))
    builder.cdef("\n".join(s.functions for s in SECTIONS))
    builder.set_source(
        "dtls_ossl._openssl",
        "\n".join(s.includes for s in SECTIONS)
        + "\n"
        + "\n".join(s.customizations for s in SECTIONS),
        libraries=["ssl", "crypto"],
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        extra_link_args=extra_link_args,
        extra_compile_args=["-O2"],
    )
    return builder


ffibuilder = _make_builder()

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(Path(__file__).resolve().parent), verbose=True)
