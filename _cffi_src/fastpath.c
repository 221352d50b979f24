/* The per-record paths of an established connection as CPython functions (METH_FASTCALL):
   the only file of the module that includes Python.h. engine.c does the OpenSSL work. */
#include <Python.h>
#include <structmember.h>

#include "dtls_ossl.h"

/* ------------------------------------------------------------------------------------------
   The per-record paths, as CPython functions (METH_FASTCALL) instead of cffi ones.

   Through cffi, each call converts its arguments with generic machinery, and Python then
   copies the datagram or record out of the scratch buffer with a slice and builds the event:
   together more than OpenSSL's own work on a 1200-byte record. These functions take the
   connection's address (an int: Python calls them only while the connection is established,
   so the C object is alive) and bytes-like objects, run the records through OpenSSL, and append
   the results themselves: datagrams (bytes) to the connection's output list, plaintext records
   (DataReceived events) to its event list. They return the status bits left for Python (0 when
   there is nothing else to do); the batch ones also return how far they got. They hold the GIL
   throughout: a record is about 1 us of OpenSSL work, less than releasing and re-taking the GIL
   costs. DtlsOssl_install_fast adds them to the module; DtlsOssl_fast_setup (Python) gives
   them the event class first. */

static PyTypeObject *DtlsOssl_event_type = NULL; /* owned: events.DataReceived */
static PyObject *DtlsOssl_event_data = NULL;     /* owned: its slot descriptor for "data" */
static Py_ssize_t DtlsOssl_event_data_at = 0;    /* the slot's offset; 0: use the descriptor */
static int DtlsOssl_event_pooled = 0; /* the events may be pooled (DtlsOssl_py_fast_setup) */

static DtlsOssl_conn *DtlsOssl_conn_arg(PyObject *o)
{
    DtlsOssl_conn *c = (DtlsOssl_conn *)PyLong_AsVoidPtr(o);
    if (c == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "dtls_ossl: the connection has no C object");
    return c;
}

/* Borrow the bytes of a bytes-like object until DtlsOssl_unborrow (bytes need no Py_buffer). */
static int DtlsOssl_borrow(PyObject *o, Py_buffer *view)
{
    if (PyBytes_CheckExact(o)) {
        view->obj = NULL;
        view->buf = PyBytes_AS_STRING(o);
        view->len = PyBytes_GET_SIZE(o);
        return 0;
    }
    return PyObject_GetBuffer(o, view, PyBUF_SIMPLE);
}

static void DtlsOssl_unborrow(Py_buffer *view)
{
    if (view->obj != NULL)
        PyBuffer_Release(view);
}

/* ------------------------------------------------------------------------------------------
   The datagrams and the DataReceived events, reused once the caller is done with them.

   A 1200-byte datagram or record is above pymalloc's 512 bytes and glibc's per-thread cache
   (1032 bytes), so each bytes object costs a trip through malloc's bins to allocate and another
   to free (about 800 instructions), and an event another 400 to make and free: together as
   much as everything else we add to OpenSSL's work on a record. So the objects made here are
   kept in two pools (datagrams; events with their bytes), and one whose only reference is the
   pool's own (Py_REFCNT 1) is filled again in place and handed out as new, the way CPython
   resizes a bytes object it holds the only reference to (_PyBytes_Resize). Nothing can tell:
   whoever held the object has let go of it; a memoryview or Py_buffer of a bytes object holds
   a reference, and neither bytes nor DataReceived has weak references or a __dict__. An event
   is reused only if its slot still holds the bytes it was made with, and nothing else holds
   those (the pool's and the slot's references).

   A pool is a ring searched from where the last search ended: records are let go of in about
   the order they were made, so the next entry is free as a rule, whether the caller takes one
   record at a time (the ring then holds two: the caller's loop variable keeps the last one) or
   a batch at a time (the ring grows to the batch). An entry is reused only within
   DTLSOSSL_POOL_SLACK bytes of the size needed, so a caller keeping the bytes never keeps much
   more memory alive than it asked for; a pool holds at most DTLSOSSL_POOL_BYTES of bytes that
   nobody else holds. The GIL serialises every use; a build without it has no pools. */
#define DTLSOSSL_POOL          128
#define DTLSOSSL_POOL_BYTES    (128 * 1024)
#define DTLSOSSL_POOL_LOOK     4    /* entries tried before making a new object */
#define DTLSOSSL_POOL_WIRE_MIN 513  /* smaller datagrams come from pymalloc, fast already */
#define DTLSOSSL_POOL_MAX      4096 /* a datagram of any usual MTU, and its records */
#define DTLSOSSL_POOL_SLACK    256

typedef struct {
    PyObject *obj[DTLSOSSL_POOL];  /* owned: obj[0:n], a datagram or an event */
    PyObject *data[DTLSOSSL_POOL]; /* owned: an event's bytes; NULL for a datagram */
    Py_ssize_t cap[DTLSOSSL_POOL]; /* the size each was made with: its buffer holds that */
    int n;
    int at;           /* where the next search starts */
    Py_ssize_t bytes; /* the sum of cap[0:n] */
} DtlsOssl_pool;

static DtlsOssl_pool DtlsOssl_wire_pool, DtlsOssl_event_pool;

/* The event's data slot (DtlsOssl_event_data_at > 0). */
#define DTLSOSSL_EVENT_DATA(ev) (*(PyObject **)((char *)(ev) + DtlsOssl_event_data_at))

#ifndef Py_GIL_DISABLED
/* Forget the hash a bytes object refilled in place cached for its old contents: ob_shash is
   deprecated to read since 3.11, but bytes_hash still caches there (3.10 to 3.14). */
static void DtlsOssl_forget_hash(PyObject *b)
{
    /* clang-format off */
    _Py_COMP_DIAG_PUSH
    _Py_COMP_DIAG_IGNORE_DEPR_DECLS
    ((PyBytesObject *)b)->ob_shash = -1;
    _Py_COMP_DIAG_POP
    /* clang-format on */
}
#endif

/* A new reference to a free object of pool holding a copy of p[0:n], or NULL (no error) if
   none of the entries tried is free and of a fitting size. */
static PyObject *DtlsOssl_pool_take(DtlsOssl_pool *pool, const char *p, Py_ssize_t n)
{
#ifndef Py_GIL_DISABLED
    PyObject *obj, *b;
    Py_ssize_t cap;
    int i, k;
    for (k = 0, i = pool->at; k < DTLSOSSL_POOL_LOOK && k < pool->n; k++) {
        obj = pool->obj[i];
        b = pool->data[i];
        cap = pool->cap[i];
        i = i + 1 < pool->n ? i + 1 : 0;
        if (Py_REFCNT(obj) != 1 || cap < n || cap - n > DTLSOSSL_POOL_SLACK)
            continue;
        if (b == NULL)
            b = obj; /* a datagram */
        else if (DTLSOSSL_EVENT_DATA(obj) != b || Py_REFCNT(b) != 2)
            continue; /* an event whose bytes are held elsewhere, or were replaced */
        pool->at = i;
        memcpy(PyBytes_AS_STRING(b), p, (size_t)n);
        PyBytes_AS_STRING(b)[n] = '\0';
        Py_SET_SIZE(b, n);
        DtlsOssl_forget_hash(b);
        return Py_NewRef(obj);
    }
#else
    (void)pool;
    (void)p;
    (void)n;
#endif
    return NULL;
}

/* Keep obj in pool: a datagram of n bytes (data NULL), or an event holding data (n bytes). */
static void DtlsOssl_pool_put(DtlsOssl_pool *pool, PyObject *obj, PyObject *data, Py_ssize_t n)
{
#ifndef Py_GIL_DISABLED
    int i;
    if (pool->n < DTLSOSSL_POOL && pool->bytes + n <= DTLSOSSL_POOL_BYTES) {
        i = pool->n++; /* searched once the ring comes round to it */
    } else {
        /* In place of the next one: in use (its holder keeps it) or of another size. */
        i = pool->at;
        pool->at = i + 1 < pool->n ? i + 1 : 0;
        pool->bytes -= pool->cap[i];
        Py_CLEAR(pool->obj[i]);
        Py_CLEAR(pool->data[i]);
    }
    pool->obj[i] = Py_NewRef(obj);
    pool->data[i] = Py_XNewRef(data);
    pool->cap[i] = n;
    pool->bytes += n;
#else
    (void)pool;
    (void)obj;
    (void)data;
    (void)n;
#endif
}

/* A new bytes object holding a copy of p[0:n], never a shared one (PyBytes_FromStringAndSize
   returns the interpreter's own object for a single byte): a pooled object is written to. */
static PyObject *DtlsOssl_new_bytes(const char *p, Py_ssize_t n)
{
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (b != NULL)
        memcpy(PyBytes_AS_STRING(b), p, (size_t)n);
    return b;
}

/* Append a datagram holding a copy of p[0:n] to list (from the pool with reuse). */
static int DtlsOssl_append_bytes(PyObject *list, int reuse, const char *p, Py_ssize_t n)
{
    PyObject *b = NULL;
    int r;
    reuse = reuse && n >= DTLSOSSL_POOL_WIRE_MIN && n <= DTLSOSSL_POOL_MAX;
    if (reuse)
        b = DtlsOssl_pool_take(&DtlsOssl_wire_pool, p, n);
    if (b == NULL) {
        if ((b = DtlsOssl_new_bytes(p, n)) == NULL)
            return -1;
        if (reuse)
            DtlsOssl_pool_put(&DtlsOssl_wire_pool, b, NULL, n);
    }
    r = PyList_Append(list, b);
    Py_DECREF(b);
    return r;
}

/* Append a DataReceived holding a copy of p[0:n] to list (from the pool with reuse), built as
   object.__new__ plus the slot's __set__ would (the frozen class refuses setattr; the result
   is an ordinary immutable event): the slot is written directly when fast_setup found it to be
   a plain object slot. */
static int DtlsOssl_append_event(PyObject *list, int reuse, const char *p, Py_ssize_t n)
{
    PyObject *data, *ev = NULL;
    int r = 0;
    if (DtlsOssl_event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dtls_ossl: fast_setup was not called");
        return -1;
    }
    reuse = reuse && DtlsOssl_event_pooled && n <= DTLSOSSL_POOL_MAX;
    if (reuse)
        ev = DtlsOssl_pool_take(&DtlsOssl_event_pool, p, n);
    if (ev == NULL) {
        if ((data = DtlsOssl_new_bytes(p, n)) == NULL)
            return -1;
        if ((ev = DtlsOssl_event_type->tp_alloc(DtlsOssl_event_type, 0)) == NULL) {
            Py_DECREF(data);
            return -1;
        }
        if (DtlsOssl_event_data_at > 0) {
            DTLSOSSL_EVENT_DATA(ev) = data; /* was NULL (tp_alloc): the reference moves */
            if (reuse)
                DtlsOssl_pool_put(&DtlsOssl_event_pool, ev, data, n);
        } else {
            r = Py_TYPE(DtlsOssl_event_data)->tp_descr_set(DtlsOssl_event_data, ev, data);
            Py_DECREF(data);
        }
    }
    if (r == 0)
        r = PyList_Append(list, ev);
    Py_DECREF(ev);
    return r;
}

/* Move the framed datagrams to out and the plaintext records to events, emptying the scratch
   buffers; with reuse, their bytes come from the pools. Returns flags without WIRE and PLAIN,
   or -1 with a Python error set. */
static int DtlsOssl_collect_into(DtlsOssl_scratch *s, int flags, PyObject *out, PyObject *events,
                                 int reuse)
{
    int i, start;
    if (flags & DTLSOSSL_WIRE) {
        for (i = 0, start = 0; i < s->n_dgrams; start = s->dgram_ends[i++])
            if (DtlsOssl_append_bytes(out, reuse, s->wire + start, s->dgram_ends[i] - start) < 0)
                return -1;
        s->wire_len = 0;
        s->n_dgrams = 0;
    }
    if (flags & DTLSOSSL_PLAIN) {
        for (i = 0, start = 0; i < s->n_recs; start = s->rec_ends[i++])
            if (DtlsOssl_append_event(events, reuse, s->plain + start, s->rec_ends[i] - start) < 0)
                return -1;
        s->plain_len = 0;
        s->n_recs = 0;
    }
    return flags & ~(DTLSOSSL_WIRE | DTLSOSSL_PLAIN);
}

/* The handshake's flights: a few, and rarely of a reusable size. */
static int DtlsOssl_collect(DtlsOssl_scratch *s, int flags, PyObject *out, PyObject *events)
{
    return DtlsOssl_collect_into(s, flags, out, events, 0);
}

/* The records of an established connection: their bytes come from the pools. */
static int DtlsOssl_collect_records(DtlsOssl_scratch *s, int flags, PyObject *out, PyObject *events)
{
    return DtlsOssl_collect_into(s, flags, out, events, 1);
}

static int DtlsOssl_check_args(Py_ssize_t nargs, Py_ssize_t want, PyObject *const *args,
                               Py_ssize_t first_list, const char *usage)
{
    Py_ssize_t i;
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", usage, want);
        return -1;
    }
    for (i = first_list; i < want; i++)
        if (!PyList_CheckExact(args[i])) {
            PyErr_Format(PyExc_TypeError, "%s: argument %zd must be a list", usage, i + 1);
            return -1;
        }
    return 0;
}

/* fast_send(conn, data, out) and fast_receive(conn, datagram, out, events): run core on the
   item, move its datagrams to out and its records to events, return the status bits left. */
static PyObject *DtlsOssl_py_one(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                                 const char *usage,
                                 int (*core)(DtlsOssl_conn *, const char *, size_t))
{
    DtlsOssl_conn *c;
    Py_buffer view;
    int flags;
    if (DtlsOssl_check_args(nargs, want, args, 2, usage) < 0)
        return NULL;
    if ((c = DtlsOssl_conn_arg(args[0])) == NULL || DtlsOssl_borrow(args[1], &view) < 0)
        return NULL;
    flags = core(c, (const char *)view.buf, (size_t)view.len);
    DtlsOssl_unborrow(&view);
    if (!(flags & (DTLSOSSL_NO_SCRATCH | DTLSOSSL_TOO_BIG)))
        flags = DtlsOssl_collect_records(c->sc, flags, args[2], want > 3 ? args[3] : NULL);
    return flags < 0 ? NULL : PyLong_FromLong(flags);
}

static PyObject *DtlsOssl_py_fast_send(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    (void)m;
    return DtlsOssl_py_one(args, nargs, 3, "fast_send(conn, data, out)", DtlsOssl_send_one);
}

static PyObject *DtlsOssl_py_fast_receive(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    (void)m;
    return DtlsOssl_py_one(args, nargs, 4, "fast_receive(conn, datagram, out, events)",
                           DtlsOssl_receive_one);
}

/* The batch results: how far the batch got (the next index) << 16 | status bits left. */
static PyObject *DtlsOssl_batch_result(Py_ssize_t next, int flags)
{
    return flags < 0 ? NULL : PyLong_FromLongLong(((long long)next << 16) | flags);
}

/* A batch's arguments (conn, items, start, lists...): the connection, the start index and a
   tuple snapshot of the items (no copy for a tuple), so that a finalizer run by the collector
   during an allocation cannot change them under us. Every item from start on must be
   bytes-like, checked before anything is done; with check_size, also 1..data_mtu bytes long
   (else *too_big = 1). Returns the new reference, or NULL with a Python error. */
static PyObject *DtlsOssl_batch_begin(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                                      const char *usage, DtlsOssl_conn **c, Py_ssize_t *start,
                                      int check_size, int *too_big)
{
    PyObject *seq;
    Py_buffer view;
    Py_ssize_t i;
    if (DtlsOssl_check_args(nargs, want, args, 3, usage) < 0)
        return NULL;
    if ((*c = DtlsOssl_conn_arg(args[0])) == NULL)
        return NULL;
    *start = PyLong_AsSsize_t(args[2]);
    if (*start < 0 && PyErr_Occurred())
        return NULL;
    if (*start < 0)
        *start = 0;
    if ((seq = PySequence_Tuple(args[1])) == NULL)
        return NULL;
    *too_big = 0;
    for (i = *start; i < PyTuple_GET_SIZE(seq); i++) {
        if (DtlsOssl_borrow(PyTuple_GET_ITEM(seq, i), &view) < 0) {
            Py_DECREF(seq);
            return NULL;
        }
        DtlsOssl_unborrow(&view);
        if (check_size && (view.len == 0 || (size_t)view.len > (*c)->data_mtu))
            *too_big = 1;
    }
    return seq;
}

/* fast_send_many(conn, payloads, start, out): send payloads[start:], one record each, and
   append the datagrams to out. Nothing is sent if a payload is empty or above the data MTU
   (TOO_BIG). Stops early only for what Python must handle (an error, output that did not fit). */
static PyObject *DtlsOssl_py_fast_send_many(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    DtlsOssl_conn *c;
    DtlsOssl_scratch *s;
    PyObject *seq, **items;
    Py_buffer view;
    Py_ssize_t i, n, start;
    int r, too_big, flags = 0;
    (void)m;
    /* All or nothing: every size is checked before anything is sent. */
    seq = DtlsOssl_batch_begin(args, nargs, 4, "fast_send_many(conn, payloads, start, out)", &c,
                               &start, 1, &too_big);
    if (seq == NULL)
        return NULL;
    n = PyTuple_GET_SIZE(seq);
    items = &PyTuple_GET_ITEM(seq, 0);
    if (too_big) {
        Py_DECREF(seq);
        return DtlsOssl_batch_result(start, DTLSOSSL_TOO_BIG);
    }
    if ((s = DtlsOssl_own_scratch(c)) == NULL) {
        Py_DECREF(seq);
        return DtlsOssl_batch_result(start, DTLSOSSL_NO_SCRATCH);
    }
    DtlsOssl_reset_established(c, s);
    for (i = start; i < n;) {
        if (DtlsOssl_borrow(items[i], &view) < 0)
            goto fail;
        if (view.len == 0 || (size_t)view.len > c->data_mtu) {
            /* Only an object whose buffer changed size since the check above. */
            DtlsOssl_unborrow(&view);
            flags |= DTLSOSSL_TOO_BIG;
            break;
        }
        r = SSL_write(c->ssl, view.buf, (int)view.len);
        DtlsOssl_unborrow(&view);
        i++;
        if (r <= 0) {
            flags |= DtlsOssl_failed(c, r);
            break;
        }
        if (c->spill_len > 0)
            break; /* OpenSSL wrote more than the scratch holds: Python grows it */
        if (s->wire_len + c->unframed + 20000 > s->wire_cap) {
            /* Room for the next record is not sure: hand over what is framed and go on. */
            if (c->unframed > 0)
                DtlsOssl_frame(c, s, c->unframed);
            c->unframed = 0;
            if (DtlsOssl_collect_records(s, DTLSOSSL_WIRE, args[3], NULL) < 0)
                goto fail;
        }
    }
    Py_DECREF(seq);
    flags = DtlsOssl_finish(c, s, flags);
    return DtlsOssl_batch_result(i, DtlsOssl_collect_records(s, flags, args[3], NULL));
fail:
    c->out = NULL;
    Py_DECREF(seq);
    return NULL;
}

/* fast_receive_many(conn, datagrams, start, out, events): process datagrams[start:] in order,
   appending plaintext records (DataReceived) to events and any datagrams to out. Stops after
   the first datagram whose outcome Python must handle (alerts, errors, close). */
static PyObject *DtlsOssl_py_fast_receive_many(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    DtlsOssl_conn *c;
    DtlsOssl_scratch *s;
    PyObject *seq, **items;
    Py_buffer view;
    Py_ssize_t i, n, start;
    int f, too_big, flags = 0;
    (void)m;
    seq = DtlsOssl_batch_begin(args, nargs, 5,
                               "fast_receive_many(conn, datagrams, start, out, events)", &c, &start,
                               0, &too_big);
    if (seq == NULL)
        return NULL;
    if ((s = DtlsOssl_own_scratch(c)) == NULL) {
        Py_DECREF(seq);
        return DtlsOssl_batch_result(start, DTLSOSSL_NO_SCRATCH);
    }
    n = PyTuple_GET_SIZE(seq);
    items = &PyTuple_GET_ITEM(seq, 0);
    DtlsOssl_reset_established(c, s);
    for (i = start; i < n;) {
        if (DtlsOssl_borrow(items[i], &view) < 0)
            goto fail;
        c->n_fast_received++;
        if (view.len > 65535) { /* above the UDP limit: cannot be genuine */
            s->dropped++;
            f = DTLSOSSL_DROPPED;
        } else {
            f = DtlsOssl_feed(c, s, (const char *)view.buf, (size_t)view.len);
        }
        DtlsOssl_unborrow(&view);
        i++;
        flags |= f;
        if ((f & ~(DTLSOSSL_PLAIN | DTLSOSSL_DROPPED)) || c->n_alerts || c->callback_failed)
            break;
        if (s->plain_cap - s->plain_len < 65536 + 18432 || s->n_recs + 5100 >= s->rec_cap) {
            /* Room for a whole datagram's records is not sure: hand the events over. */
            if (DtlsOssl_collect_records(s, DTLSOSSL_PLAIN, NULL, args[4]) < 0)
                goto fail;
        }
    }
    Py_DECREF(seq);
    flags = DtlsOssl_finish(c, s, flags);
    return DtlsOssl_batch_result(i, DtlsOssl_collect_records(s, flags, args[3], args[4]));
fail:
    c->out = NULL;
    Py_DECREF(seq);
    return NULL;
}

/* fast_step(conn, scratch, op, datagram, out, events): one call of a connection that is not
   established yet, on the scratch at that address: op 0 drives the handshake (datagram is
   None), 1 feeds the datagram, 2 handles the retransmission timer. The framed datagrams go to
   out and any plaintext records to events as the per-record paths do, except when the handshake
   completed in this call: Python queues HandshakeCompleted first, then the records (PLAIN is
   left set). Returns the status bits left. */
static PyObject *DtlsOssl_py_fast_step(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    DtlsOssl_conn *c;
    DtlsOssl_scratch *s;
    Py_buffer view;
    long op;
    int flags, keep;
    (void)m;
    if (DtlsOssl_check_args(nargs, 6, args, 4,
                            "fast_step(conn, scratch, op, datagram, out, events)")
        < 0)
        return NULL;
    if ((c = DtlsOssl_conn_arg(args[0])) == NULL)
        return NULL;
    s = (DtlsOssl_scratch *)PyLong_AsVoidPtr(args[1]);
    if (s == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "dtls_ossl: no scratch");
        return NULL;
    }
    op = PyLong_AsLong(args[2]);
    if (op == 1) {
        if (DtlsOssl_borrow(args[3], &view) < 0)
            return NULL;
        flags = DtlsOssl_receive(c, s, (const char *)view.buf, (size_t)view.len);
        DtlsOssl_unborrow(&view);
    } else if (op == 0) {
        flags = DtlsOssl_handshake(c, s);
    } else if (op == 2) {
        flags = DtlsOssl_handle_timeout(c, s);
    } else {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "fast_step: op must be 0, 1 or 2");
        return NULL;
    }
    keep = flags & DTLSOSSL_HANDSHAKE_DONE ? flags & DTLSOSSL_PLAIN : 0;
    flags = DtlsOssl_collect(s, flags & ~keep, args[4], args[5]);
    return flags < 0 ? NULL : PyLong_FromLong(flags | keep);
}

/* ------------------------------------------------------------------------------------------
   The per-record verbs of DtlsConnection as C methods.

   A Python method call costs about as many instructions as the C call it makes, and a record
   takes four (send, datagrams_to_send, receive_datagram, next_event). DtlsOssl_install_methods
   replaces those four with method descriptors of these functions, which read the connection's
   slots at their offsets and do the established connection's work directly. Anything else (a
   connection not established, keyword arguments, status bits left for Python) goes to the
   Python definition each one replaced, unchanged: the C methods are only a shortcut through
   the common case. */

enum { DTLSOSSL_M_SEND, DTLSOSSL_M_RECEIVE, DTLSOSSL_M_TO_SEND, DTLSOSSL_M_NEXT, DTLSOSSL_M_N };
enum {
    DTLSOSSL_S_STATE,
    DTLSOSSL_S_ADDR,
    DTLSOSSL_S_OUT,
    DTLSOSSL_S_EVENTS,
    DTLSOSSL_S_HEAD,
    DTLSOSSL_S_N
};

static Py_ssize_t DtlsOssl_slot[DTLSOSSL_S_N];      /* the slots' offsets in the instance */
static PyObject *DtlsOssl_python[DTLSOSSL_M_N];     /* owned: the Python methods replaced */
static PyObject *DtlsOssl_outcome[2];               /* owned: _fast_send/_receive_outcome */
static PyObject *DtlsOssl_established_state = NULL; /* owned: ConnectionState.ESTABLISHED */

/* connection.py's _POP_FRONT_MAX and _COMPACT_AT, given to install_methods. */
static Py_ssize_t DtlsOssl_pop_front_max = 0, DtlsOssl_compact_at = 0;

#define DTLSOSSL_SLOT(self, i) (*(PyObject **)((char *)(self) + DtlsOssl_slot[i]))

/* The Python method m, called as self.m(*args, **kw) would be. */
static PyObject *DtlsOssl_python_method(int m, PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *stack[8], *bound, *r;
    Py_ssize_t i, n = nargs + (kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0);
    if (n < 8) { /* the usual case: self in front of the arguments, no bound method object */
        stack[0] = self;
        for (i = 0; i < n; i++)
            stack[i + 1] = args[i];
        return PyObject_Vectorcall(DtlsOssl_python[m], stack, (size_t)nargs + 1, kwnames);
    }
    if ((bound = PyMethod_New(DtlsOssl_python[m], self)) == NULL)
        return NULL;
    r = PyObject_Vectorcall(bound, args, (size_t)nargs, kwnames);
    Py_DECREF(bound);
    return r;
}

/* The C object of an established connection, or NULL (no error set) if self is not one. */
static DtlsOssl_conn *DtlsOssl_established_conn(PyObject *self)
{
    PyObject *addr;
    if (DTLSOSSL_SLOT(self, DTLSOSSL_S_STATE) != DtlsOssl_established_state)
        return NULL;
    addr = DTLSOSSL_SLOT(self, DTLSOSSL_S_ADDR);
    if (addr == NULL || !PyLong_CheckExact(addr))
        return NULL;
    return (DtlsOssl_conn *)PyLong_AsVoidPtr(addr);
}

/* send(data, now) and receive_datagram(data, now): the fast path's result, then
   self._fast_*_outcome(flags, data, now) if bits are left. */
static PyObject *DtlsOssl_m_record(int m, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    DtlsOssl_conn *c;
    PyObject *out, *events = NULL, *call[4], *flags_obj, *r;
    Py_buffer view;
    int flags;
    if (kwnames != NULL || nargs != 2 || (c = DtlsOssl_established_conn(self)) == NULL)
        return DtlsOssl_python_method(m, self, args, nargs, kwnames);
    out = DTLSOSSL_SLOT(self, DTLSOSSL_S_OUT);
    if (m == DTLSOSSL_M_RECEIVE)
        events = DTLSOSSL_SLOT(self, DTLSOSSL_S_EVENTS);
    if (out == NULL || !PyList_CheckExact(out)
        || (m == DTLSOSSL_M_RECEIVE && (events == NULL || !PyList_CheckExact(events))))
        return DtlsOssl_python_method(m, self, args, nargs, kwnames);
    if (DtlsOssl_borrow(args[0], &view) < 0)
        return NULL;
    flags = m == DTLSOSSL_M_SEND
                ? DtlsOssl_send_one(c, (const char *)view.buf, (size_t)view.len)
                : DtlsOssl_receive_one(c, (const char *)view.buf, (size_t)view.len);
    DtlsOssl_unborrow(&view);
    if (!(flags & (DTLSOSSL_NO_SCRATCH | DTLSOSSL_TOO_BIG)))
        flags = DtlsOssl_collect_records(c->sc, flags, out, events);
    if (flags < 0)
        return NULL;
    if (flags == 0)
        Py_RETURN_NONE;
    if ((flags_obj = PyLong_FromLong(flags)) == NULL)
        return NULL;
    call[0] = self;
    call[1] = flags_obj;
    call[2] = args[0];
    call[3] = args[1];
    r = PyObject_Vectorcall(DtlsOssl_outcome[m == DTLSOSSL_M_SEND ? 0 : 1], call, 4, NULL);
    Py_DECREF(flags_obj);
    return r;
}

static PyObject *DtlsOssl_m_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    return DtlsOssl_m_record(DTLSOSSL_M_SEND, self, args, nargs, kwnames);
}

static PyObject *DtlsOssl_m_receive(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    return DtlsOssl_m_record(DTLSOSSL_M_RECEIVE, self, args, nargs, kwnames);
}

/* datagrams_to_send(now): hand over the output list, leaving a new empty one. */
static PyObject *DtlsOssl_m_to_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    PyObject *out = DTLSOSSL_SLOT(self, DTLSOSSL_S_OUT), *fresh;
    if (kwnames != NULL || nargs != 1 || out == NULL || !PyList_CheckExact(out))
        return DtlsOssl_python_method(DTLSOSSL_M_TO_SEND, self, args, nargs, kwnames);
    if (PyList_GET_SIZE(out) == 0)
        return Py_NewRef(out);
    if ((fresh = PyList_New(0)) == NULL)
        return NULL;
    DTLSOSSL_SLOT(self, DTLSOSSL_S_OUT) = fresh; /* the slot's reference moves to the caller */
    return out;
}

/* next_event(), as connection.py's: the front of a short queue is read by moving it
   (list.pop(0)); a longer one from the head index, compacted now and then. */
static PyObject *DtlsOssl_m_next(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    PyObject *ev = DTLSOSSL_SLOT(self, DTLSOSSL_S_EVENTS), *head, *e, *next;
    Py_ssize_t i, n;
    if (kwnames != NULL || nargs != 0 || ev == NULL || !PyList_CheckExact(ev))
        return DtlsOssl_python_method(DTLSOSSL_M_NEXT, self, args, nargs, kwnames);
    if ((n = PyList_GET_SIZE(ev)) == 0)
        Py_RETURN_NONE;
    head = DTLSOSSL_SLOT(self, DTLSOSSL_S_HEAD);
    if (head == NULL || !PyLong_CheckExact(head))
        return DtlsOssl_python_method(DTLSOSSL_M_NEXT, self, args, nargs, kwnames);
    i = PyLong_AsSsize_t(head);
    if (i < 0 || i >= n)
        return DtlsOssl_python_method(DTLSOSSL_M_NEXT, self, args, nargs, kwnames);
    if (i == 0 && n <= DtlsOssl_pop_front_max
        && ((PyListObject *)ev)->allocated <= 2 * DtlsOssl_pop_front_max) {
        /* The list's reference moves to the caller, the rest moves down, and the list keeps
           its (small) capacity: list.pop(0) would give it back when emptied (list_resize),
           for the next append to allocate it again. */
        PyObject **item = ((PyListObject *)ev)->ob_item;
        e = item[0];
        if (n > 1)
            memmove(item, item + 1, (size_t)(n - 1) * sizeof(PyObject *));
        Py_SET_SIZE(ev, n - 1);
        return e;
    }
    e = Py_NewRef(PyList_GET_ITEM(ev, i));
    if (i == 0 && n <= DtlsOssl_pop_front_max) {
        if (PyList_SetSlice(ev, 0, 1, NULL) < 0)
            goto fail;
        return e;
    }
    i++;
    if (i == n) {
        if (PyList_SetSlice(ev, 0, n, NULL) < 0) /* the same list: C appends to it */
            goto fail;
        i = 0;
    } else if (i >= DtlsOssl_compact_at && i + i >= n) {
        if (PyList_SetSlice(ev, 0, i, NULL) < 0)
            goto fail;
        i = 0;
    }
    if ((next = PyLong_FromSsize_t(i)) == NULL)
        goto fail;
    Py_SETREF(DTLSOSSL_SLOT(self, DTLSOSSL_S_HEAD), next);
    return e;
fail:
    Py_DECREF(e);
    return NULL;
}

static PyMethodDef DtlsOssl_methods[DTLSOSSL_M_N] = {
    {"send", (PyCFunction)(void (*)(void))DtlsOssl_m_send, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"receive_datagram", (PyCFunction)(void (*)(void))DtlsOssl_m_receive,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"datagrams_to_send", (PyCFunction)(void (*)(void))DtlsOssl_m_to_send,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"next_event", (PyCFunction)(void (*)(void))DtlsOssl_m_next, METH_FASTCALL | METH_KEYWORDS,
     NULL},
};

/* The offset of a slot from its member descriptor (a __slots__ entry). */
static Py_ssize_t DtlsOssl_slot_offset(PyObject *descr)
{
    if (!PyObject_TypeCheck(descr, &PyMemberDescr_Type)
        || ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
        PyErr_SetString(PyExc_TypeError, "install_methods: expected a __slots__ descriptor");
        return -1;
    }
    return ((PyMemberDescrObject *)descr)->d_member->offset;
}

/* install_methods(cls, slots, established, outcomes, docs, queue): slots are the member descriptors
   of _state, _addr, _out, _events and _ev_head; established is ConnectionState.ESTABLISHED;
   outcomes are _fast_send_outcome and _fast_receive_outcome; docs the four methods' docstrings
   (with their text signatures); queue is (_POP_FRONT_MAX, _COMPACT_AT). Replaces cls.send, cls.receive_datagram, cls.datagrams_to_send
   and cls.next_event, keeping each for the cases the C method does not handle. Once per
   process. */
static PyObject *DtlsOssl_py_install_methods(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *cls, *descr, *doc;
    const char *text;
    char *copy;
    Py_ssize_t i, n;
    (void)m;
    if (nargs != 6 || !PyType_Check(args[0]) || !PyTuple_CheckExact(args[1])
        || PyTuple_GET_SIZE(args[1]) != DTLSOSSL_S_N || !PyTuple_CheckExact(args[3])
        || PyTuple_GET_SIZE(args[3]) != 2 || !PyTuple_CheckExact(args[4])
        || PyTuple_GET_SIZE(args[4]) != DTLSOSSL_M_N || !PyTuple_CheckExact(args[5])
        || PyTuple_GET_SIZE(args[5]) != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "install_methods(cls, slots, established, outcomes, docs, queue)");
        return NULL;
    }
    if (DtlsOssl_established_state != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "install_methods: already installed");
        return NULL;
    }
    cls = args[0];
    DtlsOssl_pop_front_max = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[5], 0));
    DtlsOssl_compact_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[5], 1));
    if (PyErr_Occurred())
        return NULL;
    for (i = 0; i < DTLSOSSL_S_N; i++)
        if ((DtlsOssl_slot[i] = DtlsOssl_slot_offset(PyTuple_GET_ITEM(args[1], i))) < 0)
            return NULL;
    for (i = 0; i < DTLSOSSL_M_N; i++) {
        DtlsOssl_python[i] = PyObject_GetAttrString(cls, DtlsOssl_methods[i].ml_name);
        if (DtlsOssl_python[i] == NULL)
            return NULL;
    }
    DtlsOssl_established_state = Py_NewRef(args[2]);
    DtlsOssl_outcome[0] = Py_NewRef(PyTuple_GET_ITEM(args[3], 0));
    DtlsOssl_outcome[1] = Py_NewRef(PyTuple_GET_ITEM(args[3], 1));
    for (i = 0; i < DTLSOSSL_M_N; i++) {
        /* The replaced method's docstring and signature: help() and inspect stay the same. */
        doc = PyTuple_GET_ITEM(args[4], i);
        if (!PyUnicode_Check(doc) || (text = PyUnicode_AsUTF8AndSize(doc, &n)) == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "install_methods: docs must be str");
            return NULL;
        }
        if ((copy = malloc((size_t)n + 1)) == NULL) /* owned: for the life of the process */
            return PyErr_NoMemory();
        memcpy(copy, text, (size_t)n + 1);
        DtlsOssl_methods[i].ml_doc = copy;
        descr = PyDescr_NewMethod((PyTypeObject *)cls, &DtlsOssl_methods[i]);
        if (descr == NULL || PyObject_SetAttrString(cls, DtlsOssl_methods[i].ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return NULL;
        }
        Py_DECREF(descr);
    }
    Py_RETURN_NONE;
}

/* record_fill(obj, slots, *values): store each value in obj's slot (slots: a tuple of member
   descriptors of obj's class, one per value), as each descriptor's __set__ would, in one call:
   the constructors of dtls_ossl._util.Record. Calling __set__ through its method wrapper costs
   several hundred instructions a field. */
static PyObject *DtlsOssl_py_record_fill(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *obj, *slots, *d, **field;
    PyMemberDef *member;
    Py_ssize_t i;
    (void)m;
    if (nargs < 2 || !PyTuple_CheckExact(args[1]) || PyTuple_GET_SIZE(args[1]) != nargs - 2) {
        PyErr_SetString(PyExc_TypeError, "record_fill(obj, slots, *values): one slot per value");
        return NULL;
    }
    obj = args[0];
    slots = args[1];
    for (i = 0; i < nargs - 2; i++) {
        d = PyTuple_GET_ITEM(slots, i);
        if (!PyObject_TypeCheck(d, &PyMemberDescr_Type)
            || (member = ((PyMemberDescrObject *)d)->d_member)->type != T_OBJECT_EX
            || (member->flags & READONLY)
            || !PyObject_TypeCheck(obj, ((PyMemberDescrObject *)d)->d_common.d_type)) {
            PyErr_SetString(PyExc_TypeError, "record_fill: not a writable slot of this object");
            return NULL;
        }
        field = (PyObject **)((char *)obj + member->offset);
        Py_XSETREF(*field, Py_NewRef(args[i + 2]));
    }
    Py_RETURN_NONE;
}

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

/* The peer certificate's DER as bytes, or None if there is none. */
static PyObject *DtlsOssl_peer_der(DtlsOssl_conn *c)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    PyObject *der;
    unsigned char *p;
    int n = peer != NULL ? i2d_X509(peer, NULL) : -1;
    if (n <= 0)
        Py_RETURN_NONE;
    if ((der = PyBytes_FromStringAndSize(NULL, n)) == NULL)
        return NULL;
    p = (unsigned char *)PyBytes_AS_STRING(der);
    if (i2d_X509(peer, &p) != n) {
        Py_DECREF(der);
        Py_RETURN_NONE;
    }
    return der;
}

/* fast_established(conn, scratch): what a handshake that just completed negotiated, in one call,
   with scratch (its address) bound for the per-record paths: the tuple (protocol version,
   cipher, SRTP profile id or 0, data MTU, SRTP keying material or None, peer certificate DER or
   None, index of the expected fingerprint it matched or -1). None if exporting the keying
   material failed (the ERR queue says why). */
static PyObject *DtlsOssl_py_fast_established(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    DtlsOssl_conn *c;
    DtlsOssl_scratch *s;
    const char *names[2];
    char material[DTLSOSSL_MAX_SRTP_MATERIAL];
    PyObject *t, *item;
    Py_ssize_t n;
    int64_t r;
    (void)m;
    if (DtlsOssl_check_args(nargs, 2, args, 2, "fast_established(conn, scratch)") < 0)
        return NULL;
    if ((c = DtlsOssl_conn_arg(args[0])) == NULL)
        return NULL;
    s = (DtlsOssl_scratch *)PyLong_AsVoidPtr(args[1]);
    if (s == NULL && PyErr_Occurred())
        return NULL;
    if ((r = DtlsOssl_established(c, names, material)) < 0)
        Py_RETURN_NONE;
    c->sc = s;
    n = (Py_ssize_t)(r >> 32);
    if ((t = PyTuple_New(7)) == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, DtlsOssl_name(names[0]));
    PyTuple_SET_ITEM(t, 1, DtlsOssl_name(names[1]));
    PyTuple_SET_ITEM(t, 2, PyLong_FromLong((long)(r & 0xffff)));
    PyTuple_SET_ITEM(t, 3, PyLong_FromLong((long)((r >> 16) & 0xffff)));
    PyTuple_SET_ITEM(t, 4, n > 0 ? PyBytes_FromStringAndSize(material, n) : Py_NewRef(Py_None));
    PyTuple_SET_ITEM(t, 5, DtlsOssl_peer_der(c));
    PyTuple_SET_ITEM(t, 6, PyLong_FromLong(c->matched));
    for (n = 0; n < 7; n++) {
        item = PyTuple_GET_ITEM(t, n);
        if (item == NULL) {
            Py_DECREF(t);
            return NULL;
        }
    }
    return t;
}

/* The offset of descr's slot in instances of type if it is a writable object slot of type
   (a __slots__ entry, as record_fill accepts), else 0. */
static Py_ssize_t DtlsOssl_object_slot(PyObject *descr, PyTypeObject *type)
{
    PyMemberDef *member;
    if (!PyObject_TypeCheck(descr, &PyMemberDescr_Type)
        || !PyType_IsSubtype(type, ((PyMemberDescrObject *)descr)->d_common.d_type))
        return 0;
    member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY))
        return 0;
    return member->offset;
}

/* fast_setup(DataReceived, DataReceived.__dict__["data"]): the event class the fast paths
   build, and its slot descriptor. */
static PyObject *DtlsOssl_py_fast_setup(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyTypeObject *type;
    (void)m;
    if (nargs != 2 || !PyType_Check(args[0]) || Py_TYPE(args[1])->tp_descr_set == NULL) {
        PyErr_SetString(PyExc_TypeError, "fast_setup(event class, its data slot descriptor)");
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(DtlsOssl_event_type, (PyTypeObject *)args[0]);
    Py_XSETREF(DtlsOssl_event_data, args[1]);
    DtlsOssl_event_data_at = DtlsOssl_object_slot(args[1], (PyTypeObject *)args[0]);
    /* Reusing an event must be invisible: no weak reference, __dict__ or finalizer could see
       it (DataReceived has none, being slotted and final). */
    type = (PyTypeObject *)args[0];
    DtlsOssl_event_pooled = DtlsOssl_event_data_at > 0 && type->tp_weaklistoffset == 0
                            && type->tp_dictoffset == 0 && type->tp_finalize == NULL
                            && type->tp_del == NULL;
    Py_RETURN_NONE;
}

static PyMethodDef DtlsOssl_fast_methods[] = {
    {"fast_send", (PyCFunction)(void (*)(void))DtlsOssl_py_fast_send, METH_FASTCALL,
     "fast_send(conn, data, out) -> status bits left"},
    {"fast_receive", (PyCFunction)(void (*)(void))DtlsOssl_py_fast_receive, METH_FASTCALL,
     "fast_receive(conn, datagram, out, events) -> status bits left"},
    {"fast_send_many", (PyCFunction)(void (*)(void))DtlsOssl_py_fast_send_many, METH_FASTCALL,
     "fast_send_many(conn, payloads, start, out) -> next index << 16 | status bits left"},
    {"fast_receive_many", (PyCFunction)(void (*)(void))DtlsOssl_py_fast_receive_many, METH_FASTCALL,
     "fast_receive_many(conn, datagrams, start, out, events) -> next index << 16 | bits left"},
    {"fast_step", (PyCFunction)(void (*)(void))DtlsOssl_py_fast_step, METH_FASTCALL,
     "fast_step(conn, scratch, op, datagram, out, events) -> status bits left"},
    {"record_fill", (PyCFunction)(void (*)(void))DtlsOssl_py_record_fill, METH_FASTCALL,
     "record_fill(obj, slots, *values): set obj's slots, one value each"},
    {"install_methods", (PyCFunction)(void (*)(void))DtlsOssl_py_install_methods, METH_FASTCALL,
     "install_methods(cls, slots, established, outcomes, docs, queue): the per-record verbs "
     "in C"},
    {"fast_established", (PyCFunction)(void (*)(void))DtlsOssl_py_fast_established, METH_FASTCALL,
     "fast_established(conn, scratch) -> (version, cipher, srtp id, data MTU, material, der, "
     "matched) or None"},
    {"fast_setup", (PyCFunction)(void (*)(void))DtlsOssl_py_fast_setup, METH_FASTCALL,
     "fast_setup(DataReceived, DataReceived.__dict__['data'])"},
    {NULL, NULL, 0, NULL},
};

int DtlsOssl_install_fast(const char *module)
{
    /* cffi calls this without the GIL. */
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *mod = PyImport_ImportModule(module);
    int r = -1;
    if (mod != NULL) {
        r = PyModule_AddFunctions(mod, DtlsOssl_fast_methods);
        Py_DECREF(mod);
    }
    if (r < 0)
        PyErr_Print();
    PyGILState_Release(gil);
    return r;
}
