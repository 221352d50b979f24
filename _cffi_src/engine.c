/* The OpenSSL glue of dtls_ossl: the datagram BIOs, the certificate, key-log, alert and timer
   callbacks, the SSL_CTX and connection set-up, and framing records into datagrams. These are
   what OpenSSL calls back into, and they reach the connection through the SSL's ex_data, so
   the one file that sets up that link holds them all. screen.c judges untrusted datagrams and
   driver.c drives the calls Python makes. None of the three includes Python.h: each compiles,
   and can be tested or fuzzed, on its own (ci/cfiles.sh). pool.c, fastpath.c, step.c,
   conninit.c and module.c hold the CPython side. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "dtls_ossl.h"

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
static BIO_METHOD *DtlsOssl_bio_method = NULL; /* owned: created once, never freed */

static int DtlsOssl_bio_read(BIO *b, char *out, int outl)
{
    DtlsOssl_conn *c = (DtlsOssl_conn *)BIO_get_data(b);
    size_t n;
    BIO_clear_retry_flags(b);
    if (c == NULL || c->in_left == 0 || outl <= 0) {
        BIO_set_retry_read(b); /* no datagram: "try again later", like an empty memory BIO */
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
        /* OpenSSL flushes at the end of each flight it writes, and after each message it
           retransmits: frame what came before now, so no datagram spans two flights. */
        if (c != NULL && b == c->wbio && c->out != NULL && c->unframed > 0 && !c->one_flight) {
            DtlsOssl_frame(c, c->out, c->unframed);
            c->unframed = 0;
            c->framed_early = 1;
        }
        return 1;
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
        return 0; /* as a memory BIO answers the BIO_CTRL_DGRAM_* queries */
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

/* The fingerprint hash functions by DTLSOSSL_MD_* index (sha-1 ... sha-512), fetched once by
   DtlsOssl_init: an implicit fetch per digest would look the algorithm up every time. */
static EVP_MD *DtlsOssl_mds[DTLSOSSL_N_MDS]; /* owned: never freed */

/* RFC 8122 section 5, with the set Python selected (the strongest hash given): 1 if the
   certificate's digest equals one of the expected ones, recording which; else 0 with the
   peer's digest kept for the error message. Constant-time compare: the digests are public, but
   nothing here should depend on how much of one matched. */
static int DtlsOssl_check_fingerprint(DtlsOssl_conn *c, X509 *leaf)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned char *der = NULL;
    unsigned int len = 0;
    int i, n;
    if (c->check == DTLSOSSL_CHECK_INSECURE)
        return 1;
    c->actual_len = 0;
    if (c->check != DTLSOSSL_CHECK_FINGERPRINTS || c->n_expected == 0)
        return 0; /* fail closed: no fingerprints to check against */
    /* The digest of the DER, as X509_digest makes it (it encodes the certificate too); the DER
       is kept for the HandshakeCompleted event, which would otherwise encode it once more. */
    if ((n = i2d_X509(leaf, &der)) <= 0)
        return 0;
    if (!EVP_Digest(der, (size_t)n, md, &len, DtlsOssl_mds[c->check_md], NULL)
        || len != c->check_len) {
        OPENSSL_free(der);
        return 0;
    }
    for (i = 0; i < c->n_expected; i++)
        if (CRYPTO_memcmp(md, c->expected + (size_t)i * len, len) == 0) {
            c->matched = i;
            OPENSSL_free(c->peer_der);
            c->peer_der = der;
            c->peer_der_len = n;
            return 1;
        }
    OPENSSL_free(der);
    memcpy(c->actual, md, len);
    c->actual_len = len;
    return 0;
}

/* Runs once per peer certificate: OpenSSL's structural checks, then the fingerprint check
   (inside the handshake, so a mismatch fails it with an alert). */
static int DtlsOssl_cert_verify_cb(X509_STORE_CTX *store, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    DtlsOssl_conn *c = ssl ? DtlsOssl_conn_of(ssl) : NULL;
    X509 *leaf;
    (void)arg;
    if (c == NULL) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    if (X509_verify_cert(store) <= 0)
        return 0;
    leaf = X509_STORE_CTX_get0_cert(store);
    if (leaf == NULL) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    c->matched = -1;
    if (!DtlsOssl_check_fingerprint(c, leaf)) {
        c->verdict = DTLSOSSL_VERDICT_REJECTED;
        /* CERT_REJECTED makes OpenSSL send bad_certificate (RFC 5246 §7.2.2). */
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    c->verdict = DTLSOSSL_VERDICT_ACCEPTED;
    return 1;
}

/* What the peer certificate is checked against (DtlsOssl_check_fingerprint): check is a
   DTLSOSSL_CHECK_*; with DTLSOSSL_CHECK_FINGERPRINTS, digests holds len bytes of expected
   digests of hash function md (a DTLSOSSL_MD_* index), end to end. Returns 1, or 0 if md or len
   do not fit together or out of memory (nothing changed). */
int DtlsOssl_set_expected(DtlsOssl_conn *c, int check, int md, const unsigned char *digests,
                          size_t len)
{
    unsigned char *copy = NULL;
    size_t size = 0;
    if (check == DTLSOSSL_CHECK_FINGERPRINTS) {
        if (md < 0 || md >= DTLSOSSL_N_MDS || DtlsOssl_mds[md] == NULL)
            return 0;
        size = (size_t)EVP_MD_get_size(DtlsOssl_mds[md]);
        if (size == 0 || len % size != 0 || len / size > INT_MAX)
            return 0;
        if (len > 0 && (copy = malloc(len)) == NULL)
            return 0;
        if (len > 0)
            memcpy(copy, digests, len);
    }
    free(c->expected);
    c->expected = copy;
    c->n_expected = size ? (int)(len / size) : 0;
    c->check_len = (unsigned int)size;
    c->check_md = md;
    c->check = check;
    return 1;
}

static void DtlsOssl_keylog_cb(const SSL *ssl, const char *line)
{
    DtlsOssl_conn *c = DtlsOssl_conn_of(ssl);
    if (c != NULL && c->handle != NULL && DtlsOssl_py_keylog(c->handle, line) < 0)
        c->callback_failed = 1; /* the writer raised: DTLSOSSL_CALLBACK */
}

static void DtlsOssl_info_cb(const SSL *ssl, int where, int ret)
{
    DtlsOssl_conn *c;
    if (!(where & SSL_CB_ALERT))
        return;
    c = DtlsOssl_conn_of(ssl);
    if (c != NULL && c->n_alerts < DTLSOSSL_MAX_ALERTS)
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
    /* clang-format off */
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
    /* clang-format on */
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
    free(c->spill); /* the HelloVerifyRequest: ours already went out */
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
    static const char *const md_names[DTLSOSSL_N_MDS] = {"SHA1", "SHA224", "SHA256", "SHA384",
                                                         "SHA512"};
    BIO_METHOD *m;
    int i;
    for (i = 0; i < DTLSOSSL_N_MDS; i++)
        if (DtlsOssl_mds[i] == NULL)
            DtlsOssl_mds[i] = EVP_MD_fetch(NULL, md_names[i], NULL);
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
        return 0; /* DtlsOssl_init failed or did not run */
    if (SSL_CTX_use_certificate_ASN1(ctx, cert_len, cert) != 1)
        return 0;
    pkey = d2i_AutoPrivateKey(NULL, &p, key_len); /* owned: freed below */
    if (pkey == NULL)
        return 0;
    ok = SSL_CTX_use_PrivateKey(ctx, pkey); /* takes its own reference */
    EVP_PKEY_free(pkey);
    if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1)
        return 0;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, DtlsOssl_verify_cb);
    SSL_CTX_set_cert_verify_callback(ctx, DtlsOssl_cert_verify_cb, NULL);
    SSL_CTX_set_info_callback(ctx, DtlsOssl_info_cb);
    if (keylog)
        SSL_CTX_set_keylog_callback(ctx, DtlsOssl_keylog_cb);
    SSL_CTX_set_cookie_generate_cb(ctx, DtlsOssl_cookie_generate_cb);
    SSL_CTX_set_cookie_verify_cb(ctx, DtlsOssl_cookie_verify_cb);
    return 1;
}

DtlsOssl_conn *DtlsOssl_conn_new(SSL_CTX *ctx, int is_server, size_t mtu, unsigned int initial_us,
                                 unsigned int max_us, void *handle, int check, int md,
                                 const unsigned char *digests, size_t len)
{
    DtlsOssl_conn *c;
    BIO *rbio = NULL, *wbio = NULL;
    if (ERR_peek_error() != 0)
        ERR_clear_error();     /* a failure below must not be blamed on older errors */
    c = calloc(1, sizeof(*c)); /* owned: freed by DtlsOssl_conn_free */
    if (c == NULL)
        return NULL;
    c->addr = (uintptr_t)c;
    c->ssl = SSL_new(ctx); /* takes a reference to ctx */
    rbio = BIO_new(DtlsOssl_bio_method);
    wbio = BIO_new(DtlsOssl_bio_method);
    if (c->ssl == NULL || rbio == NULL || wbio == NULL)
        goto fail;
    BIO_set_data(rbio, c);
    BIO_set_data(wbio, c);
    SSL_set_bio(c->ssl, rbio, wbio); /* the SSL owns both BIOs from here */
    c->rbio = rbio;
    c->wbio = wbio;
    rbio = wbio = NULL;
    c->mtu = mtu;
    c->initial_timeout_us = initial_us;
    c->max_timeout_us = max_us;
    c->handle = handle;
    c->timeout_us = -1;
    c->matched = -1;
    if (!DtlsOssl_set_expected(c, check, md, digests, len))
        goto fail;
    /* Renumbering is DTLS 1.2 only: DTLS 1.3 acknowledges records by their numbers (RFC 9147
       section 7). 1 and up: the primed cookie exchange fed OpenSSL a record numbered 0. */
    c->renumber0 = !DtlsOssl_HAS_DTLS_1_3 || SSL_CTX_get_max_proto_version(ctx) == DTLS1_2_VERSION;
    c->seq0 = c->renumber0 ? 1 : 0;
    c->max_message = (size_t)SSL_get_max_cert_list(c->ssl); /* from the SSL_CTX */
    c->bounded = SSL_get_max_proto_version(c->ssl) == DTLS1_2_VERSION;
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
    free(c->expected);
    free(c);
    return NULL;
}

/* glibc returns freed heap memory to the system only from the top of the heap: after many
   connections end, the pages below a live allocation stay resident (the allocator keeps them,
   nothing leaks). malloc_trim(0) releases every free page (madvise), whatever its place. */
int DtlsOssl_release_memory(void)
{
#ifdef __GLIBC__
    return malloc_trim(0);
#else
    return 0;
#endif
}

void DtlsOssl_conn_free(DtlsOssl_conn *c)
{
    if (c == NULL)
        return;
    if (c->ssl != NULL) {
        SSL_set_ex_data(c->ssl, DtlsOssl_conn_index, NULL);
        SSL_free(c->ssl); /* and the BIOs */
    }
    free(c->spill);
    free(c->expected);
    OPENSSL_free(c->peer_der);
    free(c);
}

/* Pack the n bytes of whole records just written after s->wire_len into datagrams of at most
   mtu bytes, splitting on record headers: a record is never split. The n bytes are one flight
   (a BIO flush frames what came before it), so records of two flights never share a datagram:
   an OpenSSL peer discards the rest of a datagram that starts with a stale retransmission. */
void DtlsOssl_frame(DtlsOssl_conn *c, DtlsOssl_scratch *s, size_t n)
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
    if (s->wire_cap - s->wire_len < n || s->n_dgrams + (int)(n / DTLSOSSL_HDR) + 1 > s->dgram_cap)
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
