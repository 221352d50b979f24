/* The handshake path as CPython functions: step (one flight), complete (HandshakeCompleted
   built in C), receive (receive_datagram of a connection not established yet), and step_setup,
   which finds the slots and classes all of them use. Apart from the per-record paths because
   it runs a few times per connection, not per record, and builds most of the Python objects
   the module makes. */
#include <Python.h>

#include "pyglue.h"

/* ------------------------------------------------------------------------------------------
   The handshake path, as CPython functions: the C object of a connection, one call per
   flight, and completion with the HandshakeCompleted event built here.

   conn_new (conninit.c) makes a connection's C object and stores it in the connection itself:
   its owner (a DtlsOssl_Ref, which frees it when collected) in the _ref slot, its address as an
   int in _addr, which every fast path takes. conn_free frees it when the connection ends and
   sets _addr to 0 first: an ended or collected connection can only hand C a null address,
   which is refused, never a dangling one. step drives one flight: it feeds the datagram (or starts
   the handshake, or handles the timer), appends the datagrams to _out, arms _timer_at and,
   when the handshake completed, queues HandshakeCompleted (with its SrtpKeys and the peer's
   Certificate) and makes the connection ESTABLISHED, all without a Python frame. The slots are
   read and written at the offsets step_setup was given, on instances of that class only. */

/* OpenSSL's names of protocol versions and ciphers as str, made once per name: every
   HandshakeCompleted shares them. A handful exist; past the table's size they are made anew. */
#define DTLSOSSL_NAMES 16
static struct {
    char *text;    /* owned */
    PyObject *str; /* owned */
} DtlsOssl_names[DTLSOSSL_NAMES];

static PyObject *DtlsOssl_name(const char *text)
{
    PyObject *str;
    char *copy;
    size_t n = strlen(text);
    int i;
    for (i = 0; i < DTLSOSSL_NAMES && DtlsOssl_names[i].text != NULL; i++)
        if (strcmp(DtlsOssl_names[i].text, text) == 0)
            return Py_NewRef(DtlsOssl_names[i].str);
    if ((str = PyUnicode_DecodeASCII(text, (Py_ssize_t)n, NULL)) == NULL)
        return NULL;
    if (i < DTLSOSSL_NAMES && (copy = malloc(n + 1)) != NULL) {
        memcpy(copy, text, n + 1);
        DtlsOssl_names[i].text = copy;
        DtlsOssl_names[i].str = Py_NewRef(str);
    }
    return str;
}

/* The peer certificate's DER (*n bytes, to OPENSSL_free): the copy the fingerprint check kept,
   else encoded now; NULL if there is none. */
static unsigned char *DtlsOssl_take_der(DtlsOssl_conn *c, int *n)
{
    unsigned char *der = c->peer_der;
    X509 *peer;
    *n = c->peer_der_len;
    c->peer_der = NULL;
    c->peer_der_len = 0;
    if (der != NULL)
        return der;
    peer = SSL_get0_peer_certificate(c->ssl);
    if (peer == NULL || (*n = i2d_X509(peer, &der)) <= 0)
        return NULL;
    return der;
}

static void DtlsOssl_ref_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    DtlsOssl_conn_free(((DtlsOssl_Ref *)self)->c);
    type->tp_free(self);
    Py_DECREF(type); /* a heap type: each instance holds a reference */
}

static PyType_Slot DtlsOssl_ref_slots[] = {
    {Py_tp_dealloc, (void *)DtlsOssl_ref_dealloc},
    {Py_tp_doc, (void *)"The owner of one connection's C object (made by conn_new only)."},
    {0, NULL},
};

static PyType_Spec DtlsOssl_ref_spec = {
    "dtls_ossl._openssl.ConnRef",
    sizeof(DtlsOssl_Ref),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    DtlsOssl_ref_slots,
};

DTLSOSSL_SHARED_DEF PyTypeObject *DtlsOssl_RefType = NULL; /* owned: made by step_setup */

static const char *const DtlsOssl_k_names[DTLSOSSL_K_N] = {
    "_ref",
    "_addr",
    "_out",
    "_events",
    "_timer_at",
    "_state",
    "_info",
    "_data_mtu",
    "_handshake_deadline",
    "_held",
    "_sc",
    "_expected",
    "_insecure",
    "_role",
    "_n_received",
    "_handshake_timeout",
    "_config",
};

/* step's operations (_conn_core.py: STEP_*). */
enum { DTLSOSSL_STEP_HANDSHAKE, DTLSOSSL_STEP_RECEIVE, DTLSOSSL_STEP_TIMEOUT, DTLSOSSL_STEP_FIRST };

/* Why complete left the completion to Python (0: it is done). ENDED: Python code that ran
   meanwhile (a finalizer the collector ran during an allocation) ended the connection. */
enum { DTLSOSSL_WHY_EXPORT = 1, DTLSOSSL_WHY_NO_CERT, DTLSOSSL_WHY_UNCHECKED, DTLSOSSL_WHY_ENDED };

DTLSOSSL_SHARED_DEF PyTypeObject *DtlsOssl_k_type = NULL; /* owned: the connection class */
DTLSOSSL_SHARED_DEF Py_ssize_t DtlsOssl_k[DTLSOSSL_K_N];
static PyObject *DtlsOssl_k_established = NULL;         /* owned: ConnectionState.ESTABLISHED */
static PyObject *DtlsOssl_k_handshaking = NULL;         /* owned: ConnectionState.HANDSHAKING */
static PyObject *DtlsOssl_k_new = NULL;                 /* owned: ConnectionState.NEW */
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_k_server = NULL; /* owned: Role.SERVER */
static PyObject *DtlsOssl_local = NULL; /* owned: _binding.local (per-thread Scratch) */
/* owned: DtlsConnection.receive_datagram (the Python definition), ConnectionCore._first_outcome
   and ConnectionCore._handle_flags: what DtlsOssl_py_receive leaves to Python. */
static PyObject *DtlsOssl_receive_py = NULL, *DtlsOssl_first_py = NULL, *DtlsOssl_flags_py = NULL;
static PyObject *DtlsOssl_str_scratch = NULL, *DtlsOssl_str_logging = NULL; /* owned */
static PyTypeObject *DtlsOssl_sc_type = NULL;                               /* owned: Scratch */
static Py_ssize_t DtlsOssl_sc_addr; /* offset of Scratch.addr */
/* What completion builds: a class and the offsets of the slots it sets, in field order. */
static PyTypeObject *DtlsOssl_hc_type = NULL; /* owned: HandshakeCompleted */
static Py_ssize_t DtlsOssl_hc[6];
static PyTypeObject *DtlsOssl_keys_type = NULL; /* owned: SrtpKeys */
static Py_ssize_t DtlsOssl_keys[5];
static PyTypeObject *DtlsOssl_cert_type = NULL; /* owned: Certificate */
static Py_ssize_t DtlsOssl_cert[4];
static PyObject *DtlsOssl_profiles = NULL; /* owned: {IANA id: (SrtpProfile, key, salt length)} */
static PyObject *DtlsOssl_select = NULL;   /* owned: webrtc.sdp.select_fingerprints */

/* Store value (a new reference, or NULL: an error is set) in a slot. */
DTLSOSSL_SHARED_DEF int DtlsOssl_k_set(PyObject *self, int i, PyObject *value)
{
    if (value == NULL)
        return -1;
    Py_XSETREF(DTLSOSSL_K(self, i), value);
    return 0;
}

/* The C object of conn (an instance of the class step_setup was given), or NULL with an error:
   also when it was freed. */
static DtlsOssl_conn *DtlsOssl_k_conn(PyObject *conn)
{
    PyObject *addr;
    if (DtlsOssl_k_type == NULL || !PyObject_TypeCheck(conn, DtlsOssl_k_type)) {
        PyErr_SetString(PyExc_TypeError, "dtls_ossl: not a connection (or step_setup not called)");
        return NULL;
    }
    addr = DTLSOSSL_K(conn, DTLSOSSL_K_ADDR);
    if (addr == NULL || !PyLong_CheckExact(addr)) {
        PyErr_SetString(PyExc_TypeError, "dtls_ossl: the connection's _addr is not an int");
        return NULL;
    }
    return DtlsOssl_conn_arg(addr);
}

/* Whether conn still owns c. Any Python code may run during an allocation (a finalizer run by
   the collector), and end the connection: C must not touch c after that. */
static int DtlsOssl_still(PyObject *conn, DtlsOssl_conn *c)
{
    PyObject *addr = DTLSOSSL_K(conn, DTLSOSSL_K_ADDR);
    return addr != NULL && PyLong_CheckExact(addr) && PyLong_AsVoidPtr(addr) == (void *)c;
}

/* The struct of a Scratch object. */
static DtlsOssl_scratch *DtlsOssl_sc_of(PyObject *sc)
{
    PyObject *addr;
    DtlsOssl_scratch *s;
    if (DtlsOssl_sc_type == NULL || !PyObject_TypeCheck(sc, DtlsOssl_sc_type)
        || (addr = *(PyObject **)((char *)sc + DtlsOssl_sc_addr)) == NULL
        || !PyLong_CheckExact(addr)) {
        PyErr_SetString(PyExc_TypeError, "dtls_ossl: expected a Scratch");
        return NULL;
    }
    if ((s = (DtlsOssl_scratch *)PyLong_AsVoidPtr(addr)) == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "dtls_ossl: no scratch");
    return s;
}

/* An instance of t with its slots (offsets) set to values, as object.__new__ and each slot's
   __set__ would make it. */
static PyObject *DtlsOssl_build(PyTypeObject *t, const Py_ssize_t *offsets, int n,
                                PyObject *const *values)
{
    PyObject *o = t->tp_alloc(t, 0);
    int i;
    if (o == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        Py_XSETREF(*(PyObject **)((char *)o + offsets[i]), Py_NewRef(values[i]));
    return o;
}

/* The SrtpKeys of material (n bytes) for the negotiated profile id, as this side (a server or
   not) sees them
   (RFC 5764 section 4.2: client key | server key | client salt | server salt), in *keys and
   the profile in *profile (new references). */
static int DtlsOssl_srtp_keys(int server, long id, const char *material, Py_ssize_t n,
                              PyObject **profile, PyObject **keys)
{
    PyObject *key, *entry, *v[5] = {NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t k, salt, i;
    int r = -1;
    if ((key = PyLong_FromLong(id)) == NULL)
        return -1;
    entry = PyDict_GetItemWithError(DtlsOssl_profiles, key); /* borrowed */
    Py_DECREF(key);
    if (entry == NULL || !PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 3) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "dtls_ossl: unknown SRTP profile %ld", id);
        return -1;
    }
    k = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 1));
    salt = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 2));
    if (PyErr_Occurred())
        return -1;
    if (k <= 0 || salt <= 0 || n != 2 * (k + salt)) {
        PyErr_Format(PyExc_RuntimeError, "dtls_ossl: %zd bytes of keying material for SRTP %ld", n,
                     id);
        return -1;
    }
    v[0] = PyTuple_GET_ITEM(entry, 0);
    /* local key, local salt, remote key, remote salt: the client's parts first on a client */
    v[server ? 3 : 1] = PyBytes_FromStringAndSize(material, k);
    v[server ? 1 : 3] = PyBytes_FromStringAndSize(material + k, k);
    v[server ? 4 : 2] = PyBytes_FromStringAndSize(material + 2 * k, salt);
    v[server ? 2 : 4] = PyBytes_FromStringAndSize(material + 2 * k + salt, salt);
    if (v[1] != NULL && v[2] != NULL && v[3] != NULL && v[4] != NULL
        && (*keys = DtlsOssl_build(DtlsOssl_keys_type, DtlsOssl_keys, 5, v)) != NULL) {
        *profile = Py_NewRef(v[0]);
        r = 0;
    }
    for (i = 1; i < 5; i++)
        Py_XDECREF(v[i]);
    return r;
}

/* A handshake that just completed: queue HandshakeCompleted on events and make the connection
   ESTABLISHED, with s (its Scratch object sc) bound for the per-record paths. Returns 0, a
   DTLSOSSL_WHY_* for what Python must decide (nothing changed), or -1 with an error set.
   Everything is read from c before the first Python object is made. */
static int DtlsOssl_complete(PyObject *conn, DtlsOssl_conn *c, DtlsOssl_scratch *s, PyObject *sc,
                             PyObject *events)
{
    const char *names[2];
    char material[DTLSOSSL_MAX_SRTP_MATERIAL];
    PyObject *expected, *chosen, *info, *v[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    PyObject *fields[4];
    unsigned char *der;
    size_t data_mtu;
    int64_t r;
    int i, n, matched, server, result = -1;
    if (DtlsOssl_hc_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dtls_ossl: step_setup was not called");
        return -1;
    }
    if ((r = DtlsOssl_established(c, names, material)) < 0)
        return DTLSOSSL_WHY_EXPORT;
    expected = DTLSOSSL_K(conn, DTLSOSSL_K_EXPECTED);
    matched = c->matched;
    if (expected != NULL && expected != Py_None && matched < 0)
        return DTLSOSSL_WHY_UNCHECKED; /* the verify callback refuses that, so: not reached */
    if ((der = DtlsOssl_take_der(c, &n)) == NULL)
        return DTLSOSSL_WHY_NO_CERT;
    data_mtu = c->data_mtu;
    server = SSL_is_server(c->ssl);
    /* The names are OpenSSL's constant strings; nothing below reads c until DtlsOssl_still. */
    Py_XINCREF(expected);
    fields[0] = PyBytes_FromStringAndSize((const char *)der, n);
    OPENSSL_free(der);
    /* The peer's Certificate: its DER, no fingerprint computed yet, no key, not parsed. */
    fields[1] = fields[0] != NULL ? PyDict_New() : NULL;
    fields[2] = fields[3] = Py_None;
    if (fields[1] != NULL)
        v[3] = DtlsOssl_build(DtlsOssl_cert_type, DtlsOssl_cert, 4, fields);
    Py_XDECREF(fields[0]);
    Py_XDECREF(fields[1]);
    if (v[3] == NULL || (v[0] = DtlsOssl_name(names[0])) == NULL
        || (v[1] = DtlsOssl_name(names[1])) == NULL)
        goto end;
    /* The fingerprint matched: one of the strongest hash function's (RFC 8122 section 5). */
    if (expected == NULL || expected == Py_None) {
        v[4] = Py_NewRef(Py_None); /* the insecure opt-out checked none */
    } else {
        if (PyTuple_CheckExact(expected) && PyTuple_GET_SIZE(expected) == 1)
            chosen = Py_NewRef(expected);
        else if ((chosen = PyObject_CallOneArg(DtlsOssl_select, expected)) == NULL)
            goto end;
        v[4] = PySequence_GetItem(chosen, matched);
        Py_DECREF(chosen);
        if (v[4] == NULL)
            goto end;
    }
    if ((r & 0xffff) == 0) {
        v[2] = Py_NewRef(Py_None);
        v[5] = Py_NewRef(Py_None);
    } else if (DtlsOssl_srtp_keys(server, (long)(r & 0xffff), material, (Py_ssize_t)(r >> 32),
                                  &v[2], &v[5])
               < 0) {
        goto end;
    }
    if ((info = DtlsOssl_build(DtlsOssl_hc_type, DtlsOssl_hc, 6, v)) == NULL)
        goto end;
    if (!DtlsOssl_still(conn, c)) {
        Py_DECREF(info);
        result = DTLSOSSL_WHY_ENDED;
        goto end;
    }
    c->sc = s;
    if (PyList_Append(events, info) < 0
        || DtlsOssl_k_set(conn, DTLSOSSL_K_DATA_MTU, PyLong_FromSize_t(data_mtu)) < 0) {
        Py_DECREF(info);
        goto end;
    }
    DtlsOssl_k_set(conn, DTLSOSSL_K_INFO, info); /* the reference moves to the slot */
    DtlsOssl_k_set(conn, DTLSOSSL_K_STATE, Py_NewRef(DtlsOssl_k_established));
    DtlsOssl_k_set(conn, DTLSOSSL_K_HELD, Py_NewRef(Py_None));
    DtlsOssl_k_set(conn, DTLSOSSL_K_DEADLINE, Py_NewRef(Py_None));
    DtlsOssl_k_set(conn, DTLSOSSL_K_SC, Py_NewRef(sc));
    result = 0;
end:
    Py_XDECREF(expected);
    for (i = 0; i < 6; i++)
        Py_XDECREF(v[i]);
    return result;
}

/* step(conn, scratch, op, datagram, now): one call of a connection that is not established yet
   (or a timer of one that is), on the Scratch of the calling thread: op 0 starts the handshake
   (datagram is None), 1 feeds the datagram, 2 handles the retransmission timer, 3 feeds a new
   server its first datagram. Returns the status bits left for Python: 0 when all is done (the
   datagrams appended to _out, _timer_at set), DTLSOSSL_COMPLETED when the handshake completed
   too, else the bits for _handle_flags (without WIRE; PLAIN only with HANDSHAKE_DONE, whose
   event comes first). With op 3, an answer is kept only if OpenSSL wrote one and nothing
   failed, and then WIRE is added to the bits: else the bits come back as they are and nothing
   was queued (_first_outcome discards the attempt, or waits for the hello's other fragments).
   DtlsOssl_step returns the bits, or -1 with an error set. */
static int DtlsOssl_step(PyObject *conn, PyObject *sc, long op, PyObject *data, double now)
{
    PyObject *out, *events, *timer;
    DtlsOssl_conn *c;
    DtlsOssl_scratch *s;
    Py_buffer view;
    long timeout_us;
    int flags, keep, done = 0, answered = 0, why, result = -1;
    if ((c = DtlsOssl_k_conn(conn)) == NULL || (s = DtlsOssl_sc_of(sc)) == NULL)
        return -1;
    out = DTLSOSSL_K(conn, DTLSOSSL_K_OUT);
    events = DTLSOSSL_K(conn, DTLSOSSL_K_EVENTS);
    if (out == NULL || events == NULL || !PyList_CheckExact(out) || !PyList_CheckExact(events)) {
        PyErr_SetString(PyExc_TypeError, "step: the connection's _out and _events must be lists");
        return -1;
    }
    if (op == DTLSOSSL_STEP_RECEIVE || op == DTLSOSSL_STEP_FIRST) {
        if (DtlsOssl_borrow(data, &view) < 0)
            return -1;
        if (view.len > 65535) { /* above the UDP limit: cannot be genuine */
            s->dropped = 1;
            flags = DTLSOSSL_DROPPED;
        } else {
            flags = DtlsOssl_receive(c, s, (const char *)view.buf, (size_t)view.len);
        }
        DtlsOssl_unborrow(&view);
    } else if (op == DTLSOSSL_STEP_HANDSHAKE) {
        flags = DtlsOssl_handshake(c, s);
    } else if (op == DTLSOSSL_STEP_TIMEOUT) {
        flags = DtlsOssl_handle_timeout(c, s);
    } else {
        PyErr_SetString(PyExc_ValueError, "step: op must be 0, 1, 2 or 3");
        return -1;
    }
    if (op == DTLSOSSL_STEP_FIRST) {
        if (!(flags & DTLSOSSL_WIRE)
            || (flags & (DTLSOSSL_DROPPED | DTLSOSSL_FATAL | DTLSOSSL_CALLBACK)))
            return flags;
        answered = DTLSOSSL_WIRE;
    }
    timeout_us = c->timeout_us; /* read before any Python code can run (DtlsOssl_still) */
    /* Held for the call: appending may run the collector, and a finalizer anything. */
    Py_INCREF(conn);
    Py_INCREF(out);
    Py_INCREF(events);
    keep = flags & DTLSOSSL_HANDSHAKE_DONE ? flags & DTLSOSSL_PLAIN : 0;
    if ((flags = DtlsOssl_collect(s, flags & ~keep, out, events)) < 0)
        goto end;
    flags |= keep;
    if (!DtlsOssl_still(conn, c)) {
        result = 0; /* ended meanwhile: nothing is left to do */
        goto end;
    }
    if ((flags & DTLSOSSL_HANDSHAKE_DONE)
        && !(flags & ~(DTLSOSSL_HANDSHAKE_DONE | DTLSOSSL_PLAIN | DTLSOSSL_TIMER))) {
        if ((why = DtlsOssl_complete(conn, c, s, sc, events)) < 0)
            goto end;
        if (why == DTLSOSSL_WHY_ENDED) {
            result = 0;
            goto end;
        }
        if (why == 0) {
            /* Then the records that came with the last flight, if any. */
            if ((flags = DtlsOssl_collect(s, flags & ~DTLSOSSL_HANDSHAKE_DONE, out, events)) < 0)
                goto end;
            done = DTLSOSSL_COMPLETED;
        }
    }
    if (!(flags & ~DTLSOSSL_TIMER)) {
        if (!DtlsOssl_still(conn, c)) {
            result = 0;
            goto end;
        }
        timer = flags ? PyFloat_FromDouble(now + (double)timeout_us / 1e6) : Py_NewRef(Py_None);
        if (DtlsOssl_k_set(conn, DTLSOSSL_K_TIMER, timer) < 0)
            goto end;
        flags = done;
    }
    result = flags | answered;
end:
    Py_DECREF(events);
    Py_DECREF(out);
    Py_DECREF(conn);
    return result;
}

DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_step(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    double now;
    long op;
    int flags;
    (void)m;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "step(conn, scratch, op, datagram, now)");
        return NULL;
    }
    now = PyFloat_AsDouble(args[4]);
    op = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    flags = DtlsOssl_step(args[0], args[1], op, args[3], now);
    return flags < 0 ? NULL : PyLong_FromLong(flags);
}

/* Whether data (bytes-like) starts with an epoch-0 handshake record carrying a ClientHello:
   _records.is_client_hello_untrusted. */
static int DtlsOssl_client_hello(PyObject *data)
{
    const unsigned char *d;
    Py_buffer view;
    int r;
    if (DtlsOssl_borrow(data, &view) < 0) {
        PyErr_Clear();
        return 0;
    }
    d = (const unsigned char *)view.buf;
    r = view.len > DTLSOSSL_HDR + 12 && d[0] == 22 && d[3] == 0 && d[4] == 0
        && d[DTLSOSSL_HDR] == 1;
    DtlsOssl_unborrow(&view);
    return r;
}

/* func(conn, flags, now, sc): hand the status bits of a step to its Python half. Takes the
   reference to sc. */
static PyObject *DtlsOssl_call_flags(PyObject *func, PyObject *conn, int flags, PyObject *now,
                                     PyObject *sc)
{
    PyObject *call[4] = {conn, PyLong_FromLong(flags), now, sc}, *r;
    r = call[1] == NULL ? NULL : PyObject_Vectorcall(func, call, 4, NULL);
    Py_XDECREF(call[1]);
    Py_DECREF(sc);
    return r;
}

/* receive(conn, data, now): what DtlsConnection.receive_datagram's C method calls for a
   connection that is not established: a handshake flight (once the fingerprints are known) or
   a new server's ClientHello is fed here by step, counted, and the rest left to Python (the
   Python definition for anything else, _first_outcome when the first hello was not simply
   answered, _handle_flags for the bits step left). */
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_receive(PyObject *m, PyObject *const *args,
                                                  Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *conn, *state, *expected, *sc, *n, *deadline, *timeout, *r;
    Py_ssize_t count;
    double now;
    long op;
    int flags;
    (void)m;
    if (kwnames != NULL || nargs != 3 || DtlsOssl_receive_py == NULL)
        goto python;
    conn = args[0];
    if (!PyObject_TypeCheck(conn, DtlsOssl_k_type))
        goto python;
    state = DTLSOSSL_K(conn, DTLSOSSL_K_STATE);
    if (state == DtlsOssl_k_handshaking) {
        expected = DTLSOSSL_K(conn, DTLSOSSL_K_EXPECTED);
        if ((expected == NULL || expected == Py_None)
            && DTLSOSSL_K(conn, DTLSOSSL_K_INSECURE) != Py_True)
            goto python; /* fingerprints not known yet: the flight may have to be held */
        op = DTLSOSSL_STEP_RECEIVE;
    } else if (state == DtlsOssl_k_new && DTLSOSSL_K(conn, DTLSOSSL_K_ROLE) == DtlsOssl_k_server
               && DtlsOssl_client_hello(args[1])) {
        op = DTLSOSSL_STEP_FIRST;
    } else {
        goto python;
    }
    now = PyFloat_AsDouble(args[2]);
    if (now == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        goto python;
    }
    if ((sc = PyObject_GetAttr(DtlsOssl_local, DtlsOssl_str_scratch)) == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
        goto python; /* the thread's first call: Python makes its Scratch */
    }
    n = DTLSOSSL_K(conn, DTLSOSSL_K_RECEIVED);
    count = n != NULL && PyLong_CheckExact(n) ? PyLong_AsSsize_t(n) : -1;
    if (count < 0 || count == PY_SSIZE_T_MAX) {
        PyErr_Clear();
        Py_DECREF(sc);
        goto python;
    }
    if (DtlsOssl_k_set(conn, DTLSOSSL_K_RECEIVED, PyLong_FromSsize_t(count + 1)) < 0
        || (flags = DtlsOssl_step(conn, sc, op, args[1], now)) < 0) {
        Py_DECREF(sc);
        return NULL;
    }
    if (op == DTLSOSSL_STEP_FIRST) {
        if (flags == DTLSOSSL_WIRE && DTLSOSSL_K(conn, DTLSOSSL_K_STATE) == DtlsOssl_k_new) {
            /* Answered: the handshake starts (_start), its deadline from now. */
            deadline = DTLSOSSL_K(conn, DTLSOSSL_K_DEADLINE);
            timeout = DTLSOSSL_K(conn, DTLSOSSL_K_TIMEOUT);
            if (deadline == Py_None && timeout != NULL && timeout != Py_None
                && DtlsOssl_k_set(conn, DTLSOSSL_K_DEADLINE, PyNumber_Add(args[2], timeout)) < 0) {
                Py_DECREF(sc);
                return NULL;
            }
            DtlsOssl_k_set(conn, DTLSOSSL_K_STATE, Py_NewRef(DtlsOssl_k_handshaking));
            flags = 0;
        } else {
            return DtlsOssl_call_flags(DtlsOssl_first_py, conn, flags, args[2], sc);
        }
    }
    /* COMPLETED is left only for the debug log: nobody can have enabled it if logging was never
       imported. */
    if (flags == DTLSOSSL_COMPLETED && (r = PyImport_GetModule(DtlsOssl_str_logging)) == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(sc);
            return NULL;
        }
        flags = 0;
    } else if (flags == DTLSOSSL_COMPLETED) {
        Py_DECREF(r);
    }
    if (flags == 0) {
        Py_DECREF(sc);
        Py_RETURN_NONE;
    }
    return DtlsOssl_call_flags(DtlsOssl_flags_py, conn, flags, args[2], sc);
python:
    return PyObject_Vectorcall(DtlsOssl_receive_py, args, (size_t)nargs, kwnames);
}

/* complete(conn, scratch): _handshake_completed's C half, for a completion step left to Python
   (the first flight of a held one, a call that also saw an alert). Returns 0 when the event is
   queued and the connection ESTABLISHED, else why not: 1 exporting the keying material failed
   (the ERR queue says why), 2 the peer sent no certificate, 3 it was not checked, 4 the
   connection ended meanwhile. */
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_complete(PyObject *m, PyObject *const *args,
                                                   Py_ssize_t nargs)
{
    PyObject *events;
    DtlsOssl_conn *c;
    DtlsOssl_scratch *s;
    int why;
    (void)m;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "complete(conn, scratch)");
        return NULL;
    }
    if ((c = DtlsOssl_k_conn(args[0])) == NULL || (s = DtlsOssl_sc_of(args[1])) == NULL)
        return NULL;
    events = DTLSOSSL_K(args[0], DTLSOSSL_K_EVENTS);
    if (events == NULL || !PyList_CheckExact(events)) {
        PyErr_SetString(PyExc_TypeError, "complete: the connection's _events must be a list");
        return NULL;
    }
    Py_INCREF(events);
    why = DtlsOssl_complete(args[0], c, s, args[1], events);
    Py_DECREF(events);
    return why < 0 ? NULL : PyLong_FromLong(why);
}

/* step_setup(conn_class, scratch_class, completed_class, keys_class, certificate_class,
   objects): what step, complete, receive and conn_new need, once per process. The slots are
   found by name: the connection's (DtlsOssl_k_names), Scratch.addr, the fields of
   HandshakeCompleted and SrtpKeys (their __match_args__, in constructor order) and
   Certificate's _der, _fingerprints, _key_der and _x509. objects maps names to: established,
   handshaking, new (ConnectionState members), server (Role.SERVER), local (the per-thread
   storage holding a thread's Scratch as .scratch), profiles ({IANA id: (SrtpProfile, key
   length, salt length)}), select (select_fingerprints), receive (the Python receive_datagram),
   first_outcome and handle_flags (ConnectionCore's). */
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_step_setup(PyObject *m, PyObject *const *args,
                                                     Py_ssize_t nargs)
{
    PyObject *names, *d;
    Py_ssize_t sc_addr[1], i;
    (void)m;
    if (nargs != 6 || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "step_setup(conn_class, scratch_class, completed_class, "
                                         "keys_class, certificate_class, objects)");
        return NULL;
    }
    if (DtlsOssl_k_type != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "step_setup: already set up");
        return NULL;
    }
    d = args[5];
    if ((names = PyTuple_New(DTLSOSSL_K_N)) == NULL)
        return NULL;
    for (i = 0; i < DTLSOSSL_K_N; i++) {
        PyObject *name = PyUnicode_FromString(DtlsOssl_k_names[i]);
        if (name == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    /* Each names argument is a new reference that DtlsOssl_offsets consumes (NULL: failed). */
    if (DtlsOssl_offsets(args[0], names, DTLSOSSL_K_N, DtlsOssl_k) < 0
        || DtlsOssl_offsets(args[1], Py_BuildValue("(s)", "addr"), 1, sc_addr) < 0
        || DtlsOssl_offsets(args[2], PyObject_GetAttrString(args[2], "__match_args__"), 6,
                            DtlsOssl_hc)
               < 0
        || DtlsOssl_offsets(args[3], PyObject_GetAttrString(args[3], "__match_args__"), 5,
                            DtlsOssl_keys)
               < 0
        || DtlsOssl_offsets(args[4],
                            Py_BuildValue("(ssss)", "_der", "_fingerprints", "_key_der", "_x509"),
                            4, DtlsOssl_cert)
               < 0
        || (DtlsOssl_RefType = (PyTypeObject *)PyType_FromSpec(&DtlsOssl_ref_spec)) == NULL)
        return NULL;
    if ((DtlsOssl_k_established = DtlsOssl_named(d, "established")) == NULL
        || (DtlsOssl_k_handshaking = DtlsOssl_named(d, "handshaking")) == NULL
        || (DtlsOssl_k_new = DtlsOssl_named(d, "new")) == NULL
        || (DtlsOssl_k_server = DtlsOssl_named(d, "server")) == NULL
        || (DtlsOssl_local = DtlsOssl_named(d, "local")) == NULL
        || (DtlsOssl_profiles = DtlsOssl_named(d, "profiles")) == NULL
        || (DtlsOssl_select = DtlsOssl_named(d, "select")) == NULL
        || (DtlsOssl_receive_py = DtlsOssl_named(d, "receive")) == NULL
        || (DtlsOssl_first_py = DtlsOssl_named(d, "first_outcome")) == NULL
        || (DtlsOssl_flags_py = DtlsOssl_named(d, "handle_flags")) == NULL
        || (DtlsOssl_str_scratch = PyUnicode_InternFromString("scratch")) == NULL
        || (DtlsOssl_str_logging = PyUnicode_InternFromString("logging")) == NULL)
        return NULL;
    if (!PyDict_CheckExact(DtlsOssl_profiles) || !PyCallable_Check(DtlsOssl_select)) {
        PyErr_SetString(PyExc_TypeError, "step_setup: profiles must be a dict, select callable");
        return NULL;
    }
    if (DtlsOssl_init_setup(args[0], d) < 0)
        return NULL;
    DtlsOssl_sc_addr = sc_addr[0];
    DtlsOssl_sc_type = (PyTypeObject *)Py_NewRef(args[1]);
    DtlsOssl_hc_type = (PyTypeObject *)Py_NewRef(args[2]);
    DtlsOssl_keys_type = (PyTypeObject *)Py_NewRef(args[3]);
    DtlsOssl_cert_type = (PyTypeObject *)Py_NewRef(args[4]);
    DtlsOssl_k_type = (PyTypeObject *)Py_NewRef(args[0]); /* last: it says all is set */
    Py_RETURN_NONE;
}
