/* The C half of dtls_ossl._openssl, declared once: the status bits, the two structs Python
   shares with C, and every DtlsOssl_ function that crosses a file. build_ffi.py compiles every
   .c file here into one translation unit with cffi's wrappers; the cdef there repeats only what
   Python touches. Nothing here is exported from the module: the build passes
   -fvisibility=hidden, and DTLSOSSL_LOCAL says so again for a build without it. */
#ifndef DTLS_OSSL_H
#define DTLS_OSSL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#if defined(__GNUC__)
#define DTLSOSSL_LOCAL __attribute__((visibility("hidden")))
#else
#define DTLSOSSL_LOCAL
#endif

/* A function or variable one of our files shares with another and with nothing else: static in
   the module, as it was when each side was one file, because build_ffi.py compiles all the files
   as one translation unit and defines DTLSOSSL_ONE_TU. ci/cfiles.sh compiles each file alone,
   without it, where these are plain external names. DTLSOSSL_SHARED goes on the declarations
   in a header, DTLSOSSL_SHARED_DEF on the definition. */
#ifdef DTLSOSSL_ONE_TU
#define DTLSOSSL_SHARED     static
#define DTLSOSSL_SHARED_DEF static
#else
#define DTLSOSSL_SHARED extern
#define DTLSOSSL_SHARED_DEF
#endif

#ifdef DTLS1_3_VERSION
#define DtlsOssl_HAS_DTLS_1_3    1 /* the headers know DTLS 1.3 (OpenSSL 4.1+) */
#define DtlsOssl_DTLS1_3_VERSION DTLS1_3_VERSION
#else
#define DtlsOssl_HAS_DTLS_1_3    0
#define DtlsOssl_DTLS1_3_VERSION 0
#endif

/* Status bits returned by every DtlsOssl_ I/O entry point (Python decodes them). */
#define DTLSOSSL_WIRE              0x1    /* datagrams were framed into scratch->wire */
#define DTLSOSSL_PLAIN             0x2    /* plaintext records are in scratch->plain */
#define DTLSOSSL_HANDSHAKE_DONE    0x4    /* the handshake completed during this call */
#define DTLSOSSL_PEER_CLOSED       0x8    /* close_notify received */
#define DTLSOSSL_FATAL             0x10   /* OpenSSL failed; the ERR queue says why */
#define DTLSOSSL_ALERTS            0x20   /* alerts were sent or received: conn->alerts */
#define DTLSOSSL_DROPPED           0x40   /* the datagram was not well-formed DTLS framing */
#define DTLSOSSL_TIMER             0x80   /* a retransmission timer is armed: conn->timeout_us */
#define DTLSOSSL_RETRANSMITTED     0x100  /* DTLSv1_handle_timeout retransmitted a flight */
#define DTLSOSSL_OVERFLOW          0x200  /* more output than scratch holds: grow, call drain */
#define DTLSOSSL_CALLBACK          0x400  /* a Python callback captured an exception */
#define DTLSOSSL_TOO_BIG           0x800  /* fast_send: empty or longer than the data MTU */
#define DTLSOSSL_NO_SCRATCH        0x1000 /* fast_*: no scratch bound for the calling thread */
#define DTLSOSSL_COMPLETED         0x8000 /* step: the handshake completed, its event queued */
#define DTLSOSSL_MAX_SRTP_MATERIAL 88     /* 2 * (32 + 12): SRTP_AEAD_AES_256_GCM */

/* How the peer certificate is checked (DtlsOssl_set_expected), and what came of it. */
#define DTLSOSSL_CHECK_UNKNOWN      0 /* no fingerprints yet: a certificate is refused */
#define DTLSOSSL_CHECK_FINGERPRINTS 1 /* it must match one of the expected digests */
#define DTLSOSSL_CHECK_INSECURE     2 /* any well-formed certificate (tests, debugging) */
#define DTLSOSSL_VERDICT_NONE       0 /* no certificate checked yet */
#define DTLSOSSL_VERDICT_ACCEPTED   1 /* conn->matched says which fingerprint it matched */
#define DTLSOSSL_VERDICT_REJECTED   2 /* conn->actual holds its digest (none if no fingerprints) */
#define DTLSOSSL_N_MDS              5 /* the hash functions by index: sha-1 ... sha-512 */

/* A DTLS record header: type(1) version(2) epoch(2) seq(6) length(2). RFC 6347 §4.1. */
#define DTLSOSSL_HDR 13

/* Bounds on what a peer may make OpenSSL buffer during a handshake (DtlsOssl_bounded). A
   genuine peer needs one entry per fragmented message of its flight, a next-epoch Finished
   that overtook its ChangeCipherSpec, and one Finished behind each ChangeCipherSpec it sends. */
#define DTLSOSSL_MAX_PARTIAL      8 /* fragmented handshake messages in reassembly */
#define DTLSOSSL_PARTIAL_MESSAGES 4 /* their claimed lengths: this many max_message */
#define DTLSOSSL_MAX_FUTURE       4 /* next-epoch records buffered before the CCS */
#define DTLSOSSL_MAX_AFTER_CCS    4 /* next-epoch records right behind a CCS */

#define DTLSOSSL_MAX_ALERTS 8

/* One thread's output buffers, owned and sized by Python (dtls_ossl._binding.Scratch). */
typedef struct {
    char *wire; /* framed datagrams: dgram_ends[i] is where datagram i ends */
    size_t wire_cap;
    size_t wire_len;
    int *dgram_ends;
    int dgram_cap;
    int n_dgrams;
    char *plain; /* plaintext records: rec_ends[i] is where record i ends */
    size_t plain_cap;
    size_t plain_len;
    int *rec_ends;
    int rec_cap;
    int n_recs;
    int dropped;            /* datagrams dropped for bad framing during this call */
    CRYPTO_THREAD_ID owner; /* the thread that created it: DtlsOssl_scratch_claim */
} DtlsOssl_scratch;

/* One connection: owned by Python through DtlsOssl_conn_new/DtlsOssl_conn_free. */
typedef struct {
    uintptr_t addr; /* this struct's own address: Python reads it as an int for the fast paths */
    SSL *ssl;       /* owned: freed by DtlsOssl_conn_free */
    void *handle;   /* borrowed: ffi.new_handle kept alive by Python */
    size_t mtu;
    unsigned int initial_timeout_us;
    unsigned int max_timeout_us;
    long timeout_us;                 /* OpenSSL's remaining timer, -1 if none */
    int n_alerts;                    /* alerts seen during the last call */
    int alerts[DTLSOSSL_MAX_ALERTS]; /* 0x10000 if received | level << 8 | description */
    int callback_failed;             /* a Python callback raised (sticky) */
    unsigned long n_fast_received;   /* datagrams taken by the fast_receive paths */
    unsigned long n_framed;          /* datagrams framed for sending, in total */
    size_t data_mtu;                 /* largest send() payload: DTLS_get_data_mtu */
    size_t min_encrypted;            /* shortest protected record body; 0 = cipher unknown */
    BIO *rbio;                       /* borrowed: owned by ssl after SSL_set_bio */
    BIO *wbio;                       /* borrowed: owned by ssl after SSL_set_bio */
    /* The datagram BIOs (engine.c) work on these, set for the length of one call. */
    const char *in; /* borrowed: the datagram OpenSSL reads, in_left bytes left */
    size_t in_left;
    DtlsOssl_scratch *out; /* borrowed: OpenSSL's records go to out->wire after wire_len */
    size_t unframed;       /* bytes written there and not yet framed into datagrams */
    char *spill;           /* owned: output that did not fit out->wire (or with no out) */
    size_t spill_len, spill_cap;
    DtlsOssl_scratch *sc; /* borrowed (Python keeps it alive): the fast paths' scratch */
    /* Epoch-0 screening (DtlsOssl_screen_epoch0): the sequence number the next plaintext
       record is given, or (renumber0 == 0) the highest one fed and whether any was. */
    int renumber0;
    int seen0;
    uint64_t seq0;
    int one_flight;     /* this call writes at most one flight: pack across flushes */
    int in_established; /* this call is a per-record one (DtlsOssl_reset_established) */
    int timer_off;      /* OpenSSL's timer is off and stays off (DtlsOssl_timer_stays_off) */
    int framed_early;   /* a flush framed output during this call */
    /* What the peer may make OpenSSL buffer during the handshake (DtlsOssl_bounded). */
    size_t max_message;   /* largest handshake message: SSL_get_max_cert_list */
    size_t partial_bytes; /* claimed lengths of the fragmented messages below */
    int n_partial;
    unsigned int partial_seq[DTLSOSSL_MAX_PARTIAL];
    int future_records;    /* next-epoch records fed before OpenSSL's read epoch moved */
    int after_ccs_records; /* next-epoch records fed right behind a CCS in one datagram */
    int bounded;           /* DTLS 1.2 only: DtlsOssl_bounded knows its epochs */
    /* The peer certificate check (DtlsOssl_set_expected, DtlsOssl_check_fingerprint). */
    int check;               /* DTLSOSSL_CHECK_* */
    int check_md;            /* index of the hash function: the strongest given (RFC 8122) */
    unsigned int check_len;  /* its digest size */
    int n_expected;          /* digests in expected */
    unsigned char *expected; /* owned: n_expected digests of check_len bytes, end to end */
    int verdict;             /* DTLSOSSL_VERDICT_* */
    int matched;             /* index in expected of the digest matched, -1 if none */
    unsigned int actual_len; /* bytes in actual: the peer's digest, after a mismatch */
    unsigned char actual[EVP_MAX_MD_SIZE];
    unsigned char *peer_der; /* owned (OPENSSL_free): the matched peer certificate's DER, from
                                the check until the HandshakeCompleted event takes it */
    int peer_der_len;
} DtlsOssl_conn;

/* engine.c, screen.c and driver.c, called from Python through cffi. Every I/O entry point
   (driver.c) does all its OpenSSL work in one call: clear the error queue, do the operation,
   pump until want-read, frame the output into datagrams and read the retransmission timer.
   They return DTLSOSSL_* bits. */
DTLSOSSL_LOCAL int DtlsOssl_init(void);
DTLSOSSL_LOCAL int DtlsOssl_ctx_setup(SSL_CTX *ctx, const unsigned char *cert, int cert_len,
                                      const unsigned char *key, int key_len, int keylog);
DTLSOSSL_LOCAL DtlsOssl_conn *DtlsOssl_conn_new(SSL_CTX *ctx, int is_server, size_t mtu,
                                                unsigned int initial_us, unsigned int max_us,
                                                void *handle, int check, int md,
                                                const unsigned char *digests, size_t len);
DTLSOSSL_LOCAL int DtlsOssl_set_expected(DtlsOssl_conn *c, int check, int md,
                                         const unsigned char *digests, size_t len);
DTLSOSSL_LOCAL void DtlsOssl_conn_free(DtlsOssl_conn *c);
DTLSOSSL_LOCAL int DtlsOssl_handshake(DtlsOssl_conn *c, DtlsOssl_scratch *s);
DTLSOSSL_LOCAL int DtlsOssl_receive(DtlsOssl_conn *c, DtlsOssl_scratch *s, const char *data,
                                    size_t len);
DTLSOSSL_LOCAL int64_t DtlsOssl_established(DtlsOssl_conn *c, const char **names, char *material);
DTLSOSSL_LOCAL void DtlsOssl_scratch_claim(DtlsOssl_scratch *s);
DTLSOSSL_LOCAL void DtlsOssl_bind_scratch(DtlsOssl_conn *c, DtlsOssl_scratch *s);
DTLSOSSL_LOCAL int DtlsOssl_handle_timeout(DtlsOssl_conn *c, DtlsOssl_scratch *s);
DTLSOSSL_LOCAL int DtlsOssl_shutdown(DtlsOssl_conn *c, DtlsOssl_scratch *s);
DTLSOSSL_LOCAL int DtlsOssl_drain(DtlsOssl_conn *c, DtlsOssl_scratch *s);
DTLSOSSL_LOCAL int DtlsOssl_prime_cookie_exchange(DtlsOssl_conn *c);
DTLSOSSL_LOCAL size_t DtlsOssl_pending(DtlsOssl_conn *c);
DTLSOSSL_LOCAL int DtlsOssl_well_formed(const unsigned char *data, size_t len);
DTLSOSSL_LOCAL void DtlsOssl_set_renumber0(DtlsOssl_conn *c, int on);
DTLSOSSL_LOCAL int DtlsOssl_release_memory(void);

/* engine.c and driver.c, for the fast paths in fastpath.c: the steps of one call, on the
   connection's bound scratch (DtlsOssl_own_scratch is NULL when the calling thread has none). */
DTLSOSSL_LOCAL void DtlsOssl_reset(DtlsOssl_conn *c, DtlsOssl_scratch *s);
DTLSOSSL_LOCAL void DtlsOssl_reset_established(DtlsOssl_conn *c, DtlsOssl_scratch *s);
DTLSOSSL_LOCAL int DtlsOssl_finish(DtlsOssl_conn *c, DtlsOssl_scratch *s, int flags);
DTLSOSSL_LOCAL int DtlsOssl_failed(DtlsOssl_conn *c, int r);
DTLSOSSL_LOCAL void DtlsOssl_frame(DtlsOssl_conn *c, DtlsOssl_scratch *s, size_t n);
DTLSOSSL_LOCAL int DtlsOssl_feed(DtlsOssl_conn *c, DtlsOssl_scratch *s, const char *data,
                                 size_t len);
DTLSOSSL_LOCAL DtlsOssl_scratch *DtlsOssl_own_scratch(DtlsOssl_conn *c);
DTLSOSSL_LOCAL int DtlsOssl_receive_one(DtlsOssl_conn *c, const char *data, size_t len);
DTLSOSSL_LOCAL int DtlsOssl_send_one(DtlsOssl_conn *c, const char *data, size_t len);

/* screen.c, for driver.c (DtlsOssl_feed): the judgement of an untrusted datagram, in order.
   DtlsOssl_usual: 1 for the usual datagram of an established DTLS 1.2 connection, which needs
   nothing else; DtlsOssl_acceptable: 0 (drop), 1, or 2 (with plaintext records), and *strip
   records for DtlsOssl_strip to remove; DtlsOssl_bounded: 0 if OpenSSL would buffer too much;
   DtlsOssl_screen_epoch0: the datagram, a renumbered copy in *copy, or NULL (drop). */
DTLSOSSL_SHARED int DtlsOssl_usual(DtlsOssl_conn *c, const unsigned char *d, size_t len);
DTLSOSSL_SHARED int DtlsOssl_acceptable(DtlsOssl_conn *c, const unsigned char *data, size_t len,
                                        int *strip);
DTLSOSSL_SHARED const char *DtlsOssl_strip(DtlsOssl_conn *c, const char *data, size_t *len,
                                           char **copy);
DTLSOSSL_SHARED int DtlsOssl_bounded(DtlsOssl_conn *c, const unsigned char *d, size_t len,
                                     int done);
DTLSOSSL_SHARED const char *DtlsOssl_screen_epoch0(DtlsOssl_conn *c, const char *data, size_t len,
                                                   char **copy);

/* module.c: adds the METH_FASTCALL functions of the Python-facing files (pyglue.h) to the
   named (imported) module. Returns 0, or -1 with the Python error printed. */
DTLSOSSL_LOCAL int DtlsOssl_install_fast(const char *module);

/* The Python callback, generated by cffi (extern "Python+C" in build_ffi.py); the handle is the
   connection's callback state. */
DTLSOSSL_LOCAL int DtlsOssl_py_keylog(void *handle, const char *line); /* -1: it raised */

#endif /* DTLS_OSSL_H */
