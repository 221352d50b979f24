/* The OpenSSL glue of dtls_ossl: the datagram BIOs, framing records into datagrams, the
   certificate, key-log, alert and timer callbacks, the screening of untrusted datagrams, and
   the handshake, receive, timeout and shutdown entry points Python calls through cffi. It
   includes no Python.h: it compiles, and can be tested or fuzzed, on its own
   (ci/cfiles.sh); fastpath.c holds the CPython side. */
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

/* Start a call: empty outputs, the write BIO pointed at this thread's scratch buffer. */
static void DtlsOssl_begin(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    s->wire_len = 0;
    s->n_dgrams = 0;
    s->plain_len = 0;
    s->n_recs = 0;
    s->dropped = 0;
    c->n_alerts = 0;
    c->out = s;
    c->unframed = 0;
}

/* Start a call, with an empty error queue: SSL_get_error reads any entry in it as a failure of
   the call (DtlsOssl_failed). */
void DtlsOssl_reset(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    DtlsOssl_begin(c, s);
    c->in_established = 0;
    /* ERR_clear_error walks all 16 slots (~800 instructions in 3.0); peeking is far cheaper and
       the queue is almost always empty. */
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Start a per-record call of an established connection (the fast paths: Python calls them only
   then): as DtlsOssl_reset, but a DTLS 1.2 connection leaves the error queue alone. Finding
   this thread's queue costs ~200 instructions a call in 3.0 (OPENSSL_init_crypto, a run-once,
   a thread-local lookup), as much as all the rest of this function and DtlsOssl_finish; a
   record that succeeds never looks at the queue, and DtlsOssl_failed copes with an entry left
   there by someone else. Where DTLS 1.3 may be negotiated, a post-handshake message read in
   pieces leaves the connection in init between datagrams, which DtlsOssl_failed cannot tell
   from a failure: the queue is emptied first there, as before. */
void DtlsOssl_reset_established(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    DtlsOssl_begin(c, s);
    c->in_established = 1;
    if (!c->bounded && ERR_peek_error() != 0)
        ERR_clear_error();
}

/* 1 if OpenSSL's retransmission timer, now off, cannot start again on this connection.
   OpenSSL starts it when its handshake state machine sends a flight (statem.c,
   WRITE_STATE_SEND with use_timer) and when DTLSv1_handle_timeout retransmits one; heartbeats,
   the other user in 1.1.1, are gone from 3.0. Once a DTLS 1.2 handshake has finished, the state
   machine sends only to renegotiate: with SSL_OP_NO_RENEGOTIATION the peer's HelloRequest or
   ClientHello gets a no_renegotiation warning and nothing more (and we never call
   SSL_renegotiate), and a repeated Finished from the peer makes OpenSSL resend its last flight
   from its buffer without a timer. DTLS 1.3 has post-handshake messages with timers of their
   own (KeyUpdate, ACKs): never. */
static int DtlsOssl_timer_stays_off(const SSL *ssl)
{
    return SSL_is_init_finished(ssl) && SSL_version(ssl) == DTLS1_2_VERSION
           && (SSL_get_options(ssl) & SSL_OP_NO_RENEGOTIATION) != 0;
}

/* End a call: frame the output, read the timer, detach the scratch buffer (it belongs to the
   calling thread, and the next call may come from another one). The per-record calls of an
   established connection skip the timer once DtlsOssl_timer_stays_off said it stays off. */
int DtlsOssl_finish(DtlsOssl_conn *c, DtlsOssl_scratch *s, int flags)
{
    struct timeval tv;
    if (c->unframed > 0) {
        DtlsOssl_frame(c, s, c->unframed);
        c->unframed = 0;
        flags |= DTLSOSSL_WIRE;
    }
    if (c->framed_early) {
        c->framed_early = 0;
        flags |= DTLSOSSL_WIRE;
    }
    c->one_flight = 0;
    if (c->spill_len > 0)
        flags |= DTLSOSSL_OVERFLOW;
    c->out = NULL;
    if (!c->in_established || !c->timer_off) {
        if (DTLSv1_get_timeout(c->ssl, &tv) == 1) {
            c->timeout_us = (long)tv.tv_sec * 1000000L + (long)tv.tv_usec;
            c->timer_off = 0;
            flags |= DTLSOSSL_TIMER;
        } else {
            c->timeout_us = -1;
            c->timer_off = DtlsOssl_timer_stays_off(c->ssl);
        }
    }
    if (c->n_alerts)
        flags |= DTLSOSSL_ALERTS;
    if (c->callback_failed)
        flags |= DTLSOSSL_CALLBACK;
    return flags;
}

/* The outcome of an SSL call that returned r <= 0, as SSL_get_error(3) tells it. SSL_get_error
   answers SSL_ERROR_SSL (or SYSCALL) whenever the thread's error queue holds anything, and the
   per-record calls of a DTLS 1.2 connection do not empty it first (DtlsOssl_reset_established):
   an entry another library or our caller left there would turn a forged datagram's want-read
   into a fatal error. So there a failure is checked against OpenSSL's state: a genuine failure
   goes through SSLfatal, which puts the connection back "in init" (ossl_statem_send_fatal), so
   a connection still init-finished has not failed. Its queue is then emptied and the call
   classified again (want-read, close_notify, or a failure with no reason given). A genuine
   failure in a call that found a foreign entry in the queue keeps it: the entry shows among
   the reasons of the error, the only trace of skipping the check. */
int DtlsOssl_failed(DtlsOssl_conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    if ((e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) && c->in_established && c->bounded
        && SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        e = SSL_get_error(c->ssl, r);
    }
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return DTLSOSSL_PEER_CLOSED;
    default:
        return DTLSOSSL_FATAL;
    }
}

/* Drive the handshake, then read every plaintext record until OpenSSL wants more input.
   single: the datagram being fed is one record, on an established connection (DtlsOssl_feed). */
static int DtlsOssl_pump(DtlsOssl_conn *c, DtlsOssl_scratch *s, int single)
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
               want-read, at the cost of a trip through the record layer and the error queue.
               OpenSSL reads the read BIO only once its queues of records are empty (records
               buffered during the handshake first), and an established DTLS 1.2 connection
               queues none: with the datagram's only record read, nothing is pending. */
            if (c->in_left == 0 && (single || !SSL_has_pending(c->ssl)))
                return flags;
            continue;
        }
        r = DtlsOssl_failed(c, r);
        if (r == DTLSOSSL_PEER_CLOSED)
            SSL_shutdown(c->ssl); /* answer with our close_notify */
        return flags | r;
    }
}

int DtlsOssl_handshake(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    DtlsOssl_reset(c, s);
    return DtlsOssl_finish(c, s, DtlsOssl_pump(c, s, 0));
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
        return 24; /* not negotiated yet: the common AEAD case */
    if (SSL_CIPHER_get_cipher_nid(cipher) == NID_chacha20_poly1305)
        c->min_encrypted = 16;
    else if (SSL_CIPHER_is_aead(cipher))
        c->min_encrypted = 24;
    else
        c->min_encrypted = 32;
    return c->min_encrypted;
}

/* Untrusted input: 1 if the body of a plaintext handshake record is one or more whole
   fragments, each with a consistent header (RFC 6347 §4.2.3): the fragment lies within the
   record and within its message, and is empty only for an empty message. OpenSSL 3.0 ends the
   handshake on a short header ("unexpected message") or a fragment longer than the record
   ("bad length"), and on an inconsistent fragment of a message it already has it fails with
   an empty error queue (dtls1_process_out_of_seq_message), where RFC 6347 §4.1.2.7 says to
   discard. No peer sends such a record (an empty one included: RFC 5246 §6.2.1). */
static int DtlsOssl_fragments_consistent(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    while (n > 0) {
        size_t msg_len, frag_off, frag_len;
        if (n < 12)
            return 0;
        msg_len = ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
        frag_off = ((size_t)p[6] << 16) | ((size_t)p[7] << 8) | p[8];
        frag_len = ((size_t)p[9] << 16) | ((size_t)p[10] << 8) | p[11];
        if (frag_len > n - 12 || frag_off + frag_len > msg_len || (frag_len == 0 && msg_len))
            return 0;
        p += 12 + frag_len;
        n -= 12 + frag_len;
    }
    return 1;
}

/* What becomes of a plaintext (epoch-0) record: DTLSOSSL_DROP_DATAGRAM, DTLSOSSL_PASS, or
   DTLSOSSL_DROP_RECORD (only this record is removed; the rest of the datagram is fed).
   Nothing in epoch 0 is authenticated, and OpenSSL 3.0 answers each of the malformed records
   below with a fatal alert where RFC 6347 §4.1.2.7 says to discard: application data (never
   valid before the keys), content types it does not know (heartbeat, tls12_cid, ACK), a
   ChangeCipherSpec that is not the one byte 1, an alert that is not two bytes or of no known
   level, an inconsistent handshake fragment. No genuine peer sends any of them, and an
   off-path attacker cannot alter a genuine datagram, so the datagram holding one is forged
   as a whole and is dropped with its other records.
   A warning-level alert other than close_notify is removed alone: OpenSSL 3.0 reads a
   warning alert record five times over (openssl/openssl#25444) and ends the handshake with
   "too many warn alerts", so one forged warning would kill any handshake; a genuine peer
   aborting a handshake sends a fatal alert or close_notify (kept, and inherent: see the
   README), and the warnings a genuine peer may send (unrecognized_name before its
   ServerHello, user_canceled before close_notify, RFC 5246 §7.2.2) say nothing a handshake
   can act on. Removing the record, not the datagram, keeps what a peer packed with it. */
#define DTLSOSSL_DROP_DATAGRAM 0
#define DTLSOSSL_PASS          1
#define DTLSOSSL_DROP_RECORD   2
static int DtlsOssl_plain_record(DtlsOssl_conn *c, const unsigned char *r, size_t rl)
{
    const unsigned char *body = r + DTLSOSSL_HDR;
    switch (r[0]) {
    case 20: /* change_cipher_spec */
        return rl == 1 && body[0] == 1 ? DTLSOSSL_PASS : DTLSOSSL_DROP_DATAGRAM;
    case 21: /* alert */
        if (rl != 2)
            return DTLSOSSL_DROP_DATAGRAM;
        if (body[0] == 2 || (body[0] == 1 && body[1] == 0))
            return DTLSOSSL_PASS; /* fatal, or close_notify */
        return body[0] == 1 ? DTLSOSSL_DROP_RECORD : DTLSOSSL_DROP_DATAGRAM;
    case 22: /* handshake */
        return DtlsOssl_fragments_consistent(body, rl) ? DTLSOSSL_PASS : DTLSOSSL_DROP_DATAGRAM;
    case 26: /* ACK: DTLS 1.3 (RFC 9147 §7), its own business where it may be negotiated */
        return c->renumber0 ? DTLSOSSL_DROP_DATAGRAM : DTLSOSSL_PASS;
    default: /* application data in epoch 0, heartbeat, tls12_cid */
        return DTLSOSSL_DROP_DATAGRAM;
    }
}

/* Untrusted input: well_formed, no protected record shorter than the cipher allows, and every
   plaintext record acceptable to DtlsOssl_plain_record. Returns 0 (drop the datagram), 1, or
   2: acceptable and holding plaintext (epoch-0) records. *strip counts the records to remove
   (DtlsOssl_strip). */
static int DtlsOssl_acceptable(DtlsOssl_conn *c, const unsigned char *data, size_t len, int *strip)
{
    size_t off = 0;
    int r = 1;
    *strip = 0;
    if (!DtlsOssl_well_formed(data, len))
        return 0;
    while (off < len) {
        size_t rl = ((size_t)data[off + 11] << 8) | data[off + 12];
        if (data[off + 3] | data[off + 4]) {
            if (rl < DtlsOssl_min_encrypted(c))
                return 0;
        } else {
            switch (DtlsOssl_plain_record(c, data + off, rl)) {
            case DTLSOSSL_DROP_DATAGRAM:
                return 0;
            case DTLSOSSL_DROP_RECORD:
                ++*strip;
                break;
            default:
                r = 2;
            }
        }
        off += DTLSOSSL_HDR + rl;
    }
    return r;
}

/* After DtlsOssl_acceptable: a copy of the datagram without the records it marked
   DTLSOSSL_DROP_RECORD, in *copy (to be freed); *len becomes its length, 0 if nothing is
   left. NULL if out of memory (the datagram is dropped). */
static const char *DtlsOssl_strip(DtlsOssl_conn *c, const char *data, size_t *len, char **copy)
{
    const unsigned char *d = (const unsigned char *)data;
    size_t off, n = 0, rl;
    *copy = malloc(*len);
    if (*copy == NULL)
        return NULL;
    for (off = 0; off < *len; off += DTLSOSSL_HDR + rl) {
        rl = ((size_t)d[off + 11] << 8) | d[off + 12];
        if (!(d[off + 3] | d[off + 4])
            && DtlsOssl_plain_record(c, d + off, rl) == DTLSOSSL_DROP_RECORD)
            continue;
        memcpy(*copy + n, data + off, DTLSOSSL_HDR + rl);
        n += DTLSOSSL_HDR + rl;
    }
    *len = n;
    return *copy;
}

/* Plaintext (epoch-0) records carry a sequence number nobody authenticates, and OpenSSL
   moves its epoch-0 replay window to the highest one it processed: one forged record numbered
   2^48-1 made every genuine record after it look like a replay, and the handshake stalled.
   A window that moves can be walked by forged records, so with DTLS 1.2 OpenSSL never sees
   the peer's numbers: the epoch-0 records are renumbered 1, 2, 3... in the order they are
   fed. Nothing is lost: a replay check means nothing on records anyone can forge, and
   duplicated or retransmitted handshake messages are recognised by their message_seq.
   Where DTLS 1.3 may be negotiated (its ACKs name records by number) the numbers stay, and a
   datagram holding an implausible one is dropped instead: above 65535 for the first plaintext
   record (a peer numbers its records from 0, and a client's retransmitted ClientHellos before
   the first answer are a few dozen), or more than 4096 above the highest fed (every record of
   a handshake with all its retransmissions). An off-path attacker can only add datagrams, not
   change genuine ones, so the whole datagram is forged and dropped with its other records.
   Returns data (nothing to change), a copy in *copy (to be freed), or NULL: drop it. */
static const char *DtlsOssl_screen_epoch0(DtlsOssl_conn *c, const char *data, size_t len,
                                          char **copy)
{
    const unsigned char *d = (const unsigned char *)data;
    unsigned char *w;
    size_t off, i;
    uint64_t seq, top = c->seq0;
    int seen = c->seen0;
    *copy = NULL;
    if (!c->renumber0) {
        for (off = 0; off < len; off += DTLSOSSL_HDR + ((size_t)d[off + 11] << 8) + d[off + 12]) {
            if (d[off + 3] | d[off + 4])
                continue;
            for (seq = 0, i = 5; i < 11; i++)
                seq = (seq << 8) | d[off + i];
            if (seen ? seq > top + 4096 : seq > 65535)
                return NULL;
            if (!seen || seq > top)
                top = seq;
            seen = 1;
        }
        c->seq0 = top;
        c->seen0 = seen;
        return data;
    }
    if ((w = malloc(len)) == NULL)
        return NULL;
    memcpy(w, data, len);
    for (off = 0; off < len; off += DTLSOSSL_HDR + ((size_t)w[off + 11] << 8) + w[off + 12]) {
        if (w[off + 3] | w[off + 4])
            continue;
        for (seq = c->seq0++, i = 10; i >= 5; i--, seq >>= 8)
            w[off + i] = (unsigned char)(seq & 0xff);
    }
    *copy = (char *)w;
    return *copy;
}

void DtlsOssl_set_renumber0(DtlsOssl_conn *c, int on)
{
    c->renumber0 = on != 0;
    c->seq0 = c->renumber0 ? 1 : 0;
    c->seen0 = 0;
}

/* 1 once OpenSSL has read the peer's ChangeCipherSpec of this handshake: from then on it reads
   epoch 1 and buffers nothing of the next epoch. No renegotiation, no resumption. */
static int DtlsOssl_read_epoch_moved(const SSL *ssl)
{
    switch (SSL_get_state(ssl)) {
    case TLS_ST_SR_CHANGE:
    case TLS_ST_SR_FINISHED:
    case TLS_ST_SW_CHANGE:
    case TLS_ST_SW_FINISHED:
    case TLS_ST_CR_CHANGE:
    case TLS_ST_CR_FINISHED:
    case TLS_ST_OK:
        return 1;
    default:
        return 0;
    }
}

/* 1 if the plaintext handshake fragments in one record body fit the reassembly budget. OpenSSL
   allocates a fragment's claimed message length (up to SSL_get_max_cert_list, 100 KiB by
   default) for the message and for up to 10 messages ahead, so 26 forged bytes would cost
   tens of KiB. A fragment never seen before is taken into the budget here. */
static int DtlsOssl_fragments_fit(DtlsOssl_conn *c, const unsigned char *p, size_t n)
{
    while (n >= 12) {
        size_t msg_len = ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
        unsigned int seq = ((unsigned int)p[4] << 8) | p[5];
        size_t frag_len = ((size_t)p[9] << 16) | ((size_t)p[10] << 8) | p[11];
        int i;
        if (msg_len > c->max_message)
            return 0;
        if (frag_len < msg_len) { /* reassembly: OpenSSL allocates msg_len */
            for (i = 0; i < c->n_partial && c->partial_seq[i] != seq; i++)
                ;
            if (i == c->n_partial) {
                if (c->n_partial == DTLSOSSL_MAX_PARTIAL
                    || c->partial_bytes + msg_len > DTLSOSSL_PARTIAL_MESSAGES * c->max_message)
                    return 0;
                c->partial_seq[c->n_partial++] = seq;
                c->partial_bytes += msg_len;
            }
        }
        if (frag_len > n - 12)
            break; /* malformed: OpenSSL discards it */
        p += 12 + frag_len;
        n -= 12 + frag_len;
    }
    return 1;
}

/* Untrusted input, after DtlsOssl_acceptable: 1 if the datagram stays within what one
   connection may make OpenSSL buffer, else 0 (the datagram is dropped). During a handshake:
   plaintext fragments within DtlsOssl_fragments_fit, and next-epoch records (OpenSSL keeps up
   to 100 of them, each in its own read buffer) within DTLSOSSL_MAX_FUTURE, counting the record
   right behind a ChangeCipherSpec apart, since a peer that packs its flight sends its Finished
   there. Always: no epoch above 1, which only renegotiation (off) would start and which
   OpenSSL would buffer for the life of the connection. */
static int DtlsOssl_bounded(DtlsOssl_conn *c, const unsigned char *d, size_t len, int done)
{
    size_t off = 0;
    int moved = -1;
    int future = 0, after_ccs = 0, behind_ccs = 0;
    if (!c->bounded)
        return 1;
    while (off < len) {
        unsigned int epoch = ((unsigned int)d[off + 3] << 8) | d[off + 4];
        size_t rl = ((size_t)d[off + 11] << 8) | d[off + 12];
        int ccs = 0;
        if (epoch > 1)
            return 0;
        if (!done) {
            if (epoch == 0) {
                ccs = d[off] == 20;
                if (d[off] == 22 && !DtlsOssl_fragments_fit(c, d + off + DTLSOSSL_HDR, rl))
                    return 0;
            } else {
                if (moved < 0)
                    moved = DtlsOssl_read_epoch_moved(c->ssl);
                if (!moved) {
                    if (behind_ccs)
                        after_ccs++;
                    else
                        future++;
                }
            }
        }
        behind_ccs = ccs;
        off += DTLSOSSL_HDR + rl;
    }
    if (c->future_records + future > DTLSOSSL_MAX_FUTURE
        || c->after_ccs_records + after_ccs > DTLSOSSL_MAX_AFTER_CCS)
        return 0;
    c->future_records += future;
    c->after_ccs_records += after_ccs;
    return 1;
}

/* Untrusted input, on an established DTLS 1.2 connection: 1 if the datagram is well formed
   (DtlsOssl_well_formed) and holds only protected records of epoch 1, none shorter than the
   cipher allows, the usual datagram; DtlsOssl_acceptable and DtlsOssl_bounded pass exactly
   these, and strip, renumber and count nothing in them. Else 0: they decide. Cannot fail. */
static int DtlsOssl_usual(DtlsOssl_conn *c, const unsigned char *d, size_t len)
{
    size_t off = 0, rl, min = DtlsOssl_min_encrypted(c);
    if (len < DTLSOSSL_HDR || len > 65535)
        return 0;
    while (off < len) {
        if (len - off < DTLSOSSL_HDR || d[off] < 20 || d[off] > 26 || d[off + 1] != 0xfe
            || d[off + 3] != 0 || d[off + 4] != 1)
            return 0;
        rl = ((size_t)d[off + 11] << 8) | d[off + 12];
        if (rl > len - off - DTLSOSSL_HDR || rl < min)
            return 0;
        off += DTLSOSSL_HDR + rl;
    }
    return 1;
}

int DtlsOssl_feed(DtlsOssl_conn *c, DtlsOssl_scratch *s, const char *data, size_t len)
{
    int flags, strip = 0, ok, done = c->in_established;
    char *copy = NULL, *stripped = NULL;
    const unsigned char *d = (const unsigned char *)data;
    if (done && c->bounded && DtlsOssl_usual(c, d, len))
        goto screened;
    ok = DtlsOssl_acceptable(c, d, len, &strip);
    done = done || SSL_is_init_finished(c->ssl);
    if (ok && strip) {
        data = DtlsOssl_strip(c, data, &len, &stripped);
        if (data == NULL || len == 0)
            ok = 0; /* nothing left to feed: dropped as a whole */
    }
    /* Bounds next, on the datagram as the peer sent it (less the removed records);
       renumbering changes only sequence numbers. */
    if (ok && !DtlsOssl_bounded(c, (const unsigned char *)data, len, done))
        ok = 0;
    if (ok == 2)
        data = DtlsOssl_screen_epoch0(c, data, len, &copy);
    if (!ok || data == NULL) {
        free(stripped);
        s->dropped++;
        return DTLSOSSL_DROPPED;
    }
screened:
    c->in = data; /* the read BIO hands OpenSSL exactly this datagram */
    c->in_left = len;
    /* Once the handshake is done, all a datagram can make OpenSSL write is a retransmission of
       our last flight (the peer resent its Finished): one flight, so pack it as one rather
       than a datagram per message, which would double its exposure to loss. */
    if (done)
        c->one_flight = 1;
    /* One record, the usual datagram of an established connection (DtlsOssl_pump). */
    d = (const unsigned char *)data;
    flags = DtlsOssl_pump(
        c, s, c->in_established && len == DTLSOSSL_HDR + (((size_t)d[11] << 8) | d[12]));
    /* One datagram per read: never let leftovers of a bad datagram poison the next one. */
    c->in = NULL;
    c->in_left = 0;
    free(copy);
    free(stripped);
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
DtlsOssl_scratch *DtlsOssl_own_scratch(DtlsOssl_conn *c)
{
    DtlsOssl_scratch *s = c->sc;
    if (s == NULL || !CRYPTO_THREAD_compare_id(s->owner, CRYPTO_THREAD_get_current_id()))
        return NULL;
    return s;
}

/* The per-record cores of an established connection: one datagram in, or one payload out,
   on the connection's bound scratch (DTLSOSSL_NO_SCRATCH when the calling thread has none).
   They return the status bits; the output stays in the scratch for DtlsOssl_collect. */
int DtlsOssl_receive_one(DtlsOssl_conn *c, const char *data, size_t len)
{
    DtlsOssl_scratch *s = DtlsOssl_own_scratch(c);
    if (s == NULL)
        return DTLSOSSL_NO_SCRATCH;
    c->n_fast_received++;
    DtlsOssl_reset_established(c, s);
    return DtlsOssl_finish(c, s, DtlsOssl_feed(c, s, data, len));
}

int DtlsOssl_send_one(DtlsOssl_conn *c, const char *data, size_t len)
{
    DtlsOssl_scratch *s = DtlsOssl_own_scratch(c);
    int r, flags = 0;
    if (len == 0 || len > c->data_mtu)
        return DTLSOSSL_TOO_BIG; /* nothing sent: Python raises PayloadSizeError */
    if (s == NULL)
        return DTLSOSSL_NO_SCRATCH;
    DtlsOssl_reset_established(c, s);
    r = SSL_write(c->ssl, data, (int)len);
    if (r <= 0)
        flags = DtlsOssl_failed(c, r);
    return DtlsOssl_finish(c, s, flags);
}

int DtlsOssl_handle_timeout(DtlsOssl_conn *c, DtlsOssl_scratch *s)
{
    long r;
    int flags = 0;
    DtlsOssl_reset(c, s);
    c->one_flight = 1; /* only the last flight, flushed once per message */
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
    int ok;
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
        /* A mark, not a cleared queue: a record after the Finished may have failed in the same
           call, and _fatal reads its reason from the queue after this. */
        ERR_set_mark();
        ok = SSL_export_keying_material(c->ssl, (unsigned char *)material, n, label,
                                        sizeof(label) - 1, NULL, 0, 0);
        if (ok != 1) {
            ERR_clear_last_mark();
            return -1;
        }
        ERR_pop_to_mark();
    }
    c->data_mtu = DTLS_get_data_mtu(c->ssl);
    return (int64_t)(id & 0xffff) | ((int64_t)(c->data_mtu & 0xffff) << 16) | ((int64_t)n << 32);
}
