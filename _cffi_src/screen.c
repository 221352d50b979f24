/* The screening of untrusted datagrams before OpenSSL sees them: framing, the epoch-0 records
   OpenSSL 3.0 would answer with a fatal alert, the renumbering of plaintext sequence numbers,
   and the bounds on what a peer may make OpenSSL buffer. Apart from the rest of the OpenSSL
   glue because it is where a forged datagram is judged: pure functions of the bytes and a few
   counters of the connection, to be read, tested and fuzzed as one piece. driver.c calls it
   (DtlsOssl_feed). No Python.h. */
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "dtls_ossl.h"

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
DTLSOSSL_SHARED_DEF int DtlsOssl_acceptable(DtlsOssl_conn *c, const unsigned char *data, size_t len,
                                            int *strip)
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
DTLSOSSL_SHARED_DEF const char *DtlsOssl_strip(DtlsOssl_conn *c, const char *data, size_t *len,
                                               char **copy)
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
DTLSOSSL_SHARED_DEF const char *DtlsOssl_screen_epoch0(DtlsOssl_conn *c, const char *data,
                                                       size_t len, char **copy)
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
DTLSOSSL_SHARED_DEF int DtlsOssl_bounded(DtlsOssl_conn *c, const unsigned char *d, size_t len,
                                         int done)
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
DTLSOSSL_SHARED_DEF int DtlsOssl_usual(DtlsOssl_conn *c, const unsigned char *d, size_t len)
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
