/*
 * C baseline for the dtls_ossl benchmarks: the same in-memory DTLS 1.2 work that
 * benchmarks/_dtls_ossl_peer.py and benchmarks/_pyopenssl_peer.py do, written
 * directly against libssl, so the Python numbers can be read as ratios of it.
 *
 * Usage (CONFIG is required for every mode but version):
 *   dtls_baseline CONFIG handshake N     -> handshakes_per_s=...
 *   dtls_baseline CONFIG records N SIZE  -> records_per_s=...
 *   dtls_baseline CONFIG memory N        -> bytes_per_conn=... (live heap bytes, counted
 *                                           with CRYPTO_set_mem_functions)
 *   dtls_baseline CONFIG rss N           -> rss_bytes_per_conn=... (/proc/self/statm
 *                                           growth, server side, as the Python peers do)
 *   dtls_baseline version                -> openssl_version=...
 *   dtls_baseline CONFIG serve handshake     (a long-lived worker: see SERVE below)
 *   dtls_baseline CONFIG serve records SIZE
 *
 *   CONFIG = --options HEX --session-cache-mode HEX --verify-mode HEX
 *            --min-version V --max-version V --ciphers LIST --groups LIST
 *            --srtp-profiles LIST --mtu N
 *
 * CONFIG is not chosen here: benchmarks/_common.py reads it from dtls_ossl's own SSL_CTX
 * (benchmarks/_dtls_ossl_peer.py config, through dtls_probe.c) and passes it on, so both do
 * the same protocol work. The options are applied bit for bit (OpenSSL's defaults cleared
 * first), the cipher list is the library's effective, expanded one.
 *
 * Every mode also prints openssl_version=... . Output is one key=value per line. The
 * handshake and records modes also print what each side is configured with and what it
 * negotiated (client.* and server.* lines from dtls_probe.c, the same code that reports for
 * dtls_ossl), which the benchmark compares before it prints any ratio.
 *
 * Each side: DTLS_method, a self-signed ECDSA P-256 certificate shaped like the library's
 * (see make_identity) generated once at start, peer verification with a callback that accepts (WebRTC checks
 * the fingerprint instead). After each handshake both sides export 60 bytes of
 * "EXTRACTOR-dtls_srtp" keying material (compared) and check the SHA-256 fingerprint of
 * the peer certificate (X509_digest of its DER, compared with memcmp).
 *
 * SERVE: the worker benchmarks/_common.py drives chunk by chunk. It does its setup once
 * (certificates, contexts; for records an established pair and a warm-up), prints "ready",
 * then reads one command per line from stdin:
 *   handshake N | records N  -> runs N units and prints, on one line, the elapsed seconds
 *                               (CLOCK_MONOTONIC) and this thread's CPU seconds
 *                               (CLOCK_THREAD_CPUTIME_ID), both measured here
 *   report                   -> the client.* and server.* lines, then "end"
 *   quit, or end of input    -> exits 0
 * Between commands it blocks on stdin, so a worker waiting for its turn uses no CPU.
 *
 * Datagrams: a memory BIO joins everything written to it, so the bytes pending on
 * one side's write BIO are split on DTLS record headers (13 bytes, length at offset
 * 11) and packed into datagrams of at most MTU bytes; each datagram is written to the
 * peer's read BIO on its own and the peer is driven once per datagram, as a UDP
 * stack would do.
 */
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "dtls_probe.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT_LABEL "EXTRACTOR-dtls_srtp"
#define EXPORT_LEN 60
#define DGRAM_MAX 65536

/* The library's configuration, from the command line (see CONFIG above). */
typedef struct {
    uint64_t options;
    long cache_mode;
    int verify_mode;
    int min_version, max_version;
    const char *ciphers, *groups, *srtp_profiles;
    long mtu;
} config_t;

static config_t cfg;
#define MTU ((size_t)cfg.mtu)

/* ---------------------------------------------------------------- helpers */

static void die(const char *what)
{
    fprintf(stderr, "dtls_baseline: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this thread: unlike the wall clock, it does not count the time the scheduler
 * gives other processes on a shared machine. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        die("cannot open /proc/self/statm");
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        die("cannot parse /proc/self/statm");
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------- allocation counting (memory) */

/* A 16-byte header keeps the requested size and the alignment malloc promises. */
#define HDR 16
static long long live_bytes = 0;

static void *count_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    unsigned char *p = malloc(n + HDR);
    if (p == NULL)
        return NULL;
    *(size_t *)p = n;
    live_bytes += (long long)n;
    return p + HDR;
}

static void *count_realloc(void *ptr, size_t n, const char *file, int line)
{
    if (ptr == NULL)
        return count_malloc(n, file, line);
    unsigned char *base = (unsigned char *)ptr - HDR;
    size_t old = *(size_t *)base;
    unsigned char *p = realloc(base, n + HDR);
    if (p == NULL)
        return NULL;
    *(size_t *)p = n;
    live_bytes += (long long)n - (long long)old;
    return p + HDR;
}

static void count_free(void *ptr, const char *file, int line)
{
    (void)file;
    (void)line;
    if (ptr == NULL)
        return;
    unsigned char *base = (unsigned char *)ptr - HDR;
    live_bytes -= (long long)*(size_t *)base;
    free(base);
}

/* ------------------------------------------------------------ certificates */

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
    unsigned char fp[EVP_MAX_MD_SIZE];
    unsigned int fp_len;
} identity;

/* The shape of dtls_ossl's Certificate.generate() (reported as own_cert_shape and compared):
 * X.509 v3, no extensions, subject = issuer = CN of 16 random hex characters, a random
 * 159-bit serial, valid from one day ago for 30 days, ECDSA P-256 signed with SHA-256. */
static void make_identity(identity *id)
{
    unsigned char rnd[8];
    char cn[17];
    id->key = EVP_EC_gen("P-256");
    if (id->key == NULL)
        die("EVP_EC_gen");
    X509 *x = X509_new();
    if (x == NULL)
        die("X509_new");
    X509_set_version(x, 2);
    BIGNUM *serial = BN_new();
    if (serial == NULL || !BN_rand(serial, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) == NULL)
        die("serial");
    BN_free(serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        die("RAND_bytes");
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(cn + 2 * i, 3, "%02x", rnd[i]);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, id->key);
    if (X509_sign(x, id->key, EVP_sha256()) <= 0)
        die("X509_sign");
    id->cert = x;
    if (!X509_digest(x, EVP_sha256(), id->fp, &id->fp_len))
        die("X509_digest");
}

static int accept_any(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok;
    (void)store;
    return 1; /* WebRTC: the certificate is checked by fingerprint afterwards */
}

static SSL_CTX *make_ctx(const identity *id)
{
    SSL_CTX *ctx = SSL_CTX_new(DTLS_method());
    if (ctx == NULL)
        die("SSL_CTX_new");
    if (!SSL_CTX_set_min_proto_version(ctx, cfg.min_version) ||
        !SSL_CTX_set_max_proto_version(ctx, cfg.max_version))
        die("set proto version");
    SSL_CTX_clear_options(ctx, SSL_CTX_get_options(ctx));
    SSL_CTX_set_options(ctx, cfg.options);
    SSL_CTX_set_session_cache_mode(ctx, cfg.cache_mode);
    if (SSL_CTX_use_certificate(ctx, id->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, id->key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        die("use certificate/key");
    SSL_CTX_set_verify(ctx, cfg.verify_mode, accept_any);
    if (SSL_CTX_set1_groups_list(ctx, cfg.groups) != 1)
        die("set1_groups_list");
    if (SSL_CTX_set_cipher_list(ctx, cfg.ciphers) != 1)
        die("set_cipher_list");
    /* Note the inverted convention: 0 means success. */
    if (strcmp(cfg.srtp_profiles, "none") != 0 &&
        SSL_CTX_set_tlsext_use_srtp(ctx, cfg.srtp_profiles) != 0)
        die("set_tlsext_use_srtp");
    return ctx;
}

/* ------------------------------------------------------------ connections */

typedef struct {
    SSL *ssl;
    BIO *rbio; /* we write received datagrams here */
    BIO *wbio; /* OpenSSL writes outgoing records here */
    const unsigned char *peer_fp;
    unsigned int peer_fp_len;
    long sent_datagrams, sent_bytes; /* during the handshake, for the report */
} endpoint;

static void endpoint_new(endpoint *ep, SSL_CTX *ctx, int is_server, const identity *peer)
{
    ep->ssl = SSL_new(ctx);
    if (ep->ssl == NULL)
        die("SSL_new");
    ep->rbio = BIO_new(BIO_s_mem());
    ep->wbio = BIO_new(BIO_s_mem());
    if (ep->rbio == NULL || ep->wbio == NULL)
        die("BIO_new");
    /* An empty memory BIO reports "retry read" instead of EOF. */
    BIO_set_mem_eof_return(ep->rbio, -1);
    BIO_set_mem_eof_return(ep->wbio, -1);
    SSL_set_bio(ep->ssl, ep->rbio, ep->wbio);
    SSL_set_mtu(ep->ssl, cfg.mtu);
    if (is_server)
        SSL_set_accept_state(ep->ssl);
    else
        SSL_set_connect_state(ep->ssl);
    ep->peer_fp = peer->fp;
    ep->peer_fp_len = peer->fp_len;
    ep->sent_datagrams = ep->sent_bytes = 0;
}

static void endpoint_free(endpoint *ep)
{
    SSL_free(ep->ssl); /* frees both BIOs */
    ep->ssl = NULL;
}

static void drive(endpoint *ep)
{
    if (SSL_is_init_finished(ep->ssl))
        return;
    int r = SSL_do_handshake(ep->ssl);
    if (r <= 0) {
        int err = SSL_get_error(ep->ssl, r);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
            die("SSL_do_handshake");
    }
}

/* Move everything pending on src's write BIO to dst, one datagram (<= MTU) at a time.
 * Returns the number of datagrams moved. */
static int pump(endpoint *src, endpoint *dst)
{
    static unsigned char buf[DGRAM_MAX];
    int moved = 0;
    size_t pending;
    while ((pending = BIO_ctrl_pending(src->wbio)) > 0) {
        if (pending > sizeof buf)
            pending = sizeof buf;
        int n = BIO_read(src->wbio, buf, (int)pending);
        if (n <= 0)
            die("BIO_read");
        size_t off = 0, start = 0;
        while (off < (size_t)n) {
            if ((size_t)n - off < 13)
                die("truncated DTLS record header");
            size_t rec = 13 + (((size_t)buf[off + 11] << 8) | buf[off + 12]);
            if (off + rec > (size_t)n)
                die("truncated DTLS record");
            /* Start a new datagram if this record would overflow the current one. */
            if (off > start && off + rec - start > MTU) {
                if (BIO_write(dst->rbio, buf + start, (int)(off - start)) <= 0)
                    die("BIO_write");
                src->sent_bytes += (long)(off - start);
                drive(dst);
                moved++;
                start = off;
            }
            off += rec;
        }
        if (off > start) {
            if (BIO_write(dst->rbio, buf + start, (int)(off - start)) <= 0)
                die("BIO_write");
            src->sent_bytes += (long)(off - start);
            drive(dst);
            moved++;
        }
    }
    src->sent_datagrams += moved;
    return moved;
}

static void check_established(endpoint *ep, unsigned char km[EXPORT_LEN])
{
    if (SSL_get_selected_srtp_profile(ep->ssl) == NULL)
        die("no SRTP profile negotiated");
    if (SSL_export_keying_material(ep->ssl, km, EXPORT_LEN, EXPORT_LABEL, strlen(EXPORT_LABEL),
                                   NULL, 0, 0) != 1)
        die("SSL_export_keying_material");
    X509 *peer = SSL_get0_peer_certificate(ep->ssl);
    if (peer == NULL)
        die("no peer certificate");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!X509_digest(peer, EVP_sha256(), md, &md_len))
        die("X509_digest(peer)");
    if (md_len != ep->peer_fp_len || memcmp(md, ep->peer_fp, md_len) != 0)
        die("peer fingerprint mismatch");
}

typedef struct {
    SSL_CTX *client_ctx, *server_ctx;
    identity client_id, server_id;
} setup;

static void setup_init(setup *s)
{
    make_identity(&s->client_id);
    make_identity(&s->server_id);
    s->client_ctx = make_ctx(&s->client_id);
    s->server_ctx = make_ctx(&s->server_id);
}

static void handshake_pair(setup *s, endpoint *client, endpoint *server)
{
    endpoint_new(client, s->client_ctx, 0, &s->server_id);
    endpoint_new(server, s->server_ctx, 1, &s->client_id);
    drive(client); /* ClientHello */
    for (int round = 0; round < 32; round++) {
        int moved = pump(client, server) + pump(server, client);
        if (SSL_is_init_finished(client->ssl) && SSL_is_init_finished(server->ssl) && moved == 0)
            break;
    }
    if (!SSL_is_init_finished(client->ssl) || !SSL_is_init_finished(server->ssl))
        die("handshake did not complete");
    unsigned char km_c[EXPORT_LEN], km_s[EXPORT_LEN];
    check_established(client, km_c);
    check_established(server, km_s);
    if (memcmp(km_c, km_s, EXPORT_LEN) != 0)
        die("exported keying material differs");
}

/* ------------------------------------------------------------------ modes */

/* What both sides are configured with and negotiated (dtls_probe.c), and how the peer
 * certificate was checked: the benchmark compares these lines with dtls_ossl's. */
static void print_report(endpoint *client, endpoint *server)
{
    static char buf[16384];
    endpoint *eps[2] = {client, server};
    const char *names[2] = {"client.", "server."};
    for (int i = 0; i < 2; i++) {
        if (dtls_probe_configured(eps[i]->ssl, names[i], buf, sizeof buf) < 0)
            die("dtls_probe_configured: buffer too small");
        fputs(buf, stdout);
        if (dtls_probe_negotiated(eps[i]->ssl, names[i], buf, sizeof buf) < 0)
            die("dtls_probe_negotiated: buffer too small");
        fputs(buf, stdout);
        printf("%shandshake_datagrams_sent=%ld\n", names[i], eps[i]->sent_datagrams);
        printf("%shandshake_bytes_sent=%ld\n", names[i], eps[i]->sent_bytes);
        printf("%sfingerprint_check=sha-256 of the peer certificate DER, compared\n", names[i]);
        printf("%sfingerprint_how=X509_digest + memcmp after the handshake\n", names[i]);
    }
}

static void print_version(void)
{
    printf("openssl_version=%s\n", OpenSSL_version(OPENSSL_VERSION));
}

static void mode_handshake(long n)
{
    setup s;
    setup_init(&s);
    endpoint c, sv;
    for (int i = 0; i < 20; i++) { /* warm-up */
        handshake_pair(&s, &c, &sv);
        endpoint_free(&c);
        endpoint_free(&sv);
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        handshake_pair(&s, &c, &sv);
        endpoint_free(&c);
        endpoint_free(&sv);
    }
    double dt = now_s() - t0;
    print_version();
    printf("handshakes=%ld\nseconds=%.6f\nhandshakes_per_s=%.2f\n", n, dt, (double)n / dt);
    handshake_pair(&s, &c, &sv); /* untimed: report what the timed ones negotiated */
    print_report(&c, &sv);
    endpoint_free(&c);
    endpoint_free(&sv);
}

/* An established pair sending SIZE-byte records from client to server. */
typedef struct {
    setup s;
    endpoint c, sv;
    unsigned char *data;
    int size, dgram_len;
} records_state;

static void records_init(records_state *r, int size)
{
    setup_init(&r->s);
    handshake_pair(&r->s, &r->c, &r->sv);
    r->size = size;
    r->dgram_len = 0;
    r->data = malloc((size_t)size);
    if (r->data == NULL)
        die("malloc");
    memset(r->data, 0x5a, (size_t)size);
}

/* Send n records through the pair: SSL_write, BIO_read, BIO_write, SSL_read. */
static void records_run(records_state *r, long n)
{
    static unsigned char dgram[DGRAM_MAX], out[DGRAM_MAX];
    for (long i = 0; i < n; i++) {
        if (SSL_write(r->c.ssl, r->data, r->size) != r->size)
            die("SSL_write");
        r->dgram_len = BIO_read(r->c.wbio, dgram, sizeof dgram);
        if (r->dgram_len <= 0)
            die("BIO_read");
        if (BIO_write(r->sv.rbio, dgram, r->dgram_len) != r->dgram_len)
            die("BIO_write");
        if (SSL_read(r->sv.ssl, out, sizeof out) != r->size)
            die("SSL_read");
    }
}

static void records_free(records_state *r)
{
    free(r->data);
    endpoint_free(&r->c);
    endpoint_free(&r->sv);
}

static void mode_records(long n, int size)
{
    records_state r;
    records_init(&r, size);
    records_run(&r, n / 20 + 10); /* warm-up */
    double t0 = now_s();
    records_run(&r, n);
    double dt = now_s() - t0;
    print_version();
    printf("cipher=%s\n", SSL_get_cipher_name(r.sv.ssl));
    printf("records=%ld\nrecord_size=%d\ndatagram_size=%d\nseconds=%.6f\nrecords_per_s=%.2f\n", n,
           size, r.dgram_len, dt, (double)n / dt);
    print_report(&r.c, &r.sv);
    records_free(&r);
}

/* n handshake pairs, each freed at once (the handshake mode's timed loop). */
static void handshakes_run(setup *s, long n)
{
    endpoint c, sv;
    for (long i = 0; i < n; i++) {
        handshake_pair(s, &c, &sv);
        endpoint_free(&c);
        endpoint_free(&sv);
    }
}

#define SERVE_WARMUP_RECORDS 10000

/* The SERVE worker (see the top of this file); returns the exit status. */
static int mode_serve(int is_records, int size)
{
    setup s;
    records_state r;
    if (is_records) {
        records_init(&r, size);
        records_run(&r, SERVE_WARMUP_RECORDS);
    } else {
        setup_init(&s);
        handshakes_run(&s, 20); /* warm-up, as the handshake mode */
    }
    printf("ready\n");
    fflush(stdout);
    char line[256], cmd[32];
    while (fgets(line, sizeof line, stdin) != NULL) {
        long n = 0;
        int got = sscanf(line, "%31s %ld", cmd, &n);
        if (got < 1)
            continue;
        if (got == 2 && n > 0 && strcmp(cmd, is_records ? "records" : "handshake") == 0) {
            double t0 = now_s(), c0 = cpu_s();
            if (is_records)
                records_run(&r, n);
            else
                handshakes_run(&s, n);
            double c1 = cpu_s(), t1 = now_s();
            printf("%.9f %.9f\n", t1 - t0, c1 - c0);
        } else if (got == 1 && strcmp(cmd, "report") == 0) {
            print_version();
            if (is_records) {
                printf("cipher=%s\n", SSL_get_cipher_name(r.sv.ssl));
                printf("datagram_size=%d\n", r.dgram_len);
                print_report(&r.c, &r.sv);
            } else {
                endpoint c, sv;
                handshake_pair(&s, &c, &sv); /* untimed: what the timed ones negotiated */
                print_report(&c, &sv);
                endpoint_free(&c);
                endpoint_free(&sv);
            }
            printf("end\n");
        } else if (got == 1 && strcmp(cmd, "quit") == 0) {
            break;
        } else {
            printf("error=unknown command: %s", line);
            fflush(stdout);
            return 2;
        }
        fflush(stdout);
    }
    if (is_records)
        records_free(&r);
    return 0;
}

/* Per-connection memory of one side: establish n pairs, free the other side of each
 * pair at once, keep this side, and divide the growth by n. */
static double per_conn(setup *s, long n, int keep_server, int use_rss)
{
    endpoint *kept = calloc((size_t)n, sizeof *kept);
    if (kept == NULL)
        die("calloc");
    endpoint c, sv;
    long long before = use_rss ? rss_bytes() : live_bytes;
    for (long i = 0; i < n; i++) {
        handshake_pair(s, &c, &sv);
        if (keep_server) {
            endpoint_free(&c);
            kept[i] = sv;
        } else {
            endpoint_free(&sv);
            kept[i] = c;
        }
    }
    long long after = use_rss ? rss_bytes() : live_bytes;
    for (long i = 0; i < n; i++)
        endpoint_free(&kept[i]);
    free(kept);
    return (double)(after - before) / (double)n;
}

static void mode_memory(long n, int use_rss)
{
    setup s;
    setup_init(&s);
    endpoint c, sv;
    for (int i = 0; i < 20; i++) { /* warm-up: lazy tables, error strings, free lists */
        handshake_pair(&s, &c, &sv);
        endpoint_free(&c);
        endpoint_free(&sv);
    }
    print_version();
    printf("connections=%ld\n", n);
    if (use_rss) {
        /* Server side only: RSS never shrinks after free, so a second measurement in
         * the same process would reuse the first one's pages and read low. */
        printf("rss_bytes_per_conn=%.1f\n", per_conn(&s, n, 1, 1));
    } else {
        printf("bytes_per_conn=%.1f\n", per_conn(&s, n, 1, 0));
        printf("client_bytes_per_conn=%.1f\n", per_conn(&s, n, 0, 0));
    }
}

static int parse_version(const char *name)
{
    if (strcmp(name, "any") == 0)
        return 0;
    if (strcmp(name, "DTLSv1.2") == 0)
        return DTLS1_2_VERSION;
#ifdef DTLS1_3_VERSION
    if (strcmp(name, "DTLSv1.3") == 0)
        return DTLS1_3_VERSION;
#endif
    fprintf(stderr, "dtls_baseline: unknown version %s\n", name);
    exit(2);
}

/* Consume the CONFIG options at the front of argv; return the index of the mode. */
static int parse_config(int argc, char **argv)
{
    int seen = 0, i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *k = argv[i] + 2, *v = argv[i + 1];
        char *end = NULL;
        if (strcmp(k, "options") == 0)
            cfg.options = strtoull(v, &end, 0), seen |= 1;
        else if (strcmp(k, "session-cache-mode") == 0)
            cfg.cache_mode = strtol(v, &end, 0), seen |= 2;
        else if (strcmp(k, "verify-mode") == 0)
            cfg.verify_mode = (int)strtol(v, &end, 0), seen |= 4;
        else if (strcmp(k, "min-version") == 0)
            cfg.min_version = parse_version(v), seen |= 8;
        else if (strcmp(k, "max-version") == 0)
            cfg.max_version = parse_version(v), seen |= 16;
        else if (strcmp(k, "ciphers") == 0)
            cfg.ciphers = v, seen |= 32;
        else if (strcmp(k, "groups") == 0)
            cfg.groups = v, seen |= 64;
        else if (strcmp(k, "srtp-profiles") == 0)
            cfg.srtp_profiles = v, seen |= 128;
        else if (strcmp(k, "mtu") == 0)
            cfg.mtu = strtol(v, &end, 0), seen |= 256;
        else {
            fprintf(stderr, "dtls_baseline: unknown option --%s\n", k);
            exit(2);
        }
        if (end != NULL && (*end != '\0' || end == v)) {
            fprintf(stderr, "dtls_baseline: --%s: not a number: %s\n", k, v);
            exit(2);
        }
    }
    if (i < argc && strcmp(argv[i], "version") != 0 && seen != 511) {
        fprintf(stderr, "dtls_baseline: every CONFIG option is required (the benchmark "
                        "passes dtls_ossl's; see benchmarks/_dtls_ossl_peer.py config)\n");
        exit(2);
    }
    return i;
}

int main(int argc, char **argv)
{
    int m = parse_config(argc, argv);
    int left = argc - m;
    const char *mode = m < argc ? argv[m] : "";
    if (strcmp(mode, "memory") == 0) {
        /* Must precede every other OpenSSL call. */
        if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free))
            die("CRYPTO_set_mem_functions");
    }
    if (left == 2 && strcmp(mode, "handshake") == 0) {
        mode_handshake(atol(argv[m + 1]));
    } else if (left == 3 && strcmp(mode, "records") == 0) {
        mode_records(atol(argv[m + 1]), atoi(argv[m + 2]));
    } else if (left == 2 && strcmp(mode, "memory") == 0) {
        mode_memory(atol(argv[m + 1]), 0);
    } else if (left == 2 && strcmp(mode, "rss") == 0) {
        mode_memory(atol(argv[m + 1]), 1);
    } else if (left == 2 && strcmp(mode, "serve") == 0 && strcmp(argv[m + 1], "handshake") == 0) {
        return mode_serve(0, 0);
    } else if (left == 3 && strcmp(mode, "serve") == 0 && strcmp(argv[m + 1], "records") == 0) {
        return mode_serve(1, atoi(argv[m + 2]));
    } else if (left == 1 && strcmp(mode, "version") == 0) {
        print_version();
    } else {
        fprintf(stderr,
                "usage: %s CONFIG (handshake N | records N SIZE | memory N | rss N |\n"
                "       serve handshake | serve records SIZE) | version\n",
                argv[0]);
        return 2;
    }
    return 0;
}
