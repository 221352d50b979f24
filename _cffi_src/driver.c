/* The calls Python makes into OpenSSL. Each one starts (DtlsOssl_reset), does its operation
   (the handshake, a datagram fed in after screen.c passed it, a record sent, the timer, the
   shutdown), reads until OpenSSL wants more input, and ends (DtlsOssl_finish: frame the output,
   read the timer). Apart from engine.c because this is the order of one call, which the fast
   paths (fastpath.c) reuse step by step, while engine.c is what OpenSSL calls back into. No
   Python.h. */
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "dtls_ossl.h"

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
