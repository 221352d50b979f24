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

/* ------------------------------------------------------------------------------------------
   The handshake path, as CPython functions: the C object of a connection, one call per
   flight, and completion with the HandshakeCompleted event built here.

   conn_new makes a connection's C object and stores it in the connection itself: its owner (a
   DtlsOssl_Ref, which frees it when collected) in the _ref slot, its address as an int in
   _addr, which every fast path takes. conn_free frees it when the connection ends and sets
   _addr to 0 first: an ended or collected connection can only hand C a null address, which
   is refused, never a dangling one. step drives one flight: it feeds the datagram (or starts
   the handshake, or handles the timer), appends the datagrams to _out, arms _timer_at and,
   when the handshake completed, queues HandshakeCompleted (with its SrtpKeys and the peer's
   Certificate) and makes the connection ESTABLISHED, all without a Python frame. The slots are
   read and written at the offsets step_setup was given, on instances of that class only. */

typedef struct {
    PyObject ob_base;
    DtlsOssl_conn *c; /* owned: NULL once freed */
} DtlsOssl_Ref;

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

static PyTypeObject *DtlsOssl_RefType = NULL; /* owned: made by step_setup */

/* The connection's slots, found by name (DtlsOssl_k_names) by step_setup. */
enum {
    DTLSOSSL_K_REF,      /* _ref: the DtlsOssl_Ref */
    DTLSOSSL_K_ADDR,     /* _addr: its C object's address, 0 once freed */
    DTLSOSSL_K_OUT,      /* _out: datagrams to send (a list) */
    DTLSOSSL_K_EVENTS,   /* _events (a list) */
    DTLSOSSL_K_TIMER,    /* _timer_at */
    DTLSOSSL_K_STATE,    /* _state */
    DTLSOSSL_K_INFO,     /* _info */
    DTLSOSSL_K_DATA_MTU, /* _data_mtu */
    DTLSOSSL_K_DEADLINE, /* _handshake_deadline */
    DTLSOSSL_K_HELD,     /* _held */
    DTLSOSSL_K_SC,       /* _sc: the scratch the fast paths use once established */
    DTLSOSSL_K_EXPECTED, /* _expected: the fingerprints given (a tuple), or None */
    DTLSOSSL_K_INSECURE, /* _insecure: True with the no-check opt-out */
    DTLSOSSL_K_ROLE,     /* _role */
    DTLSOSSL_K_RECEIVED, /* _n_received: datagrams counted in Python */
    DTLSOSSL_K_TIMEOUT,  /* _handshake_timeout */
    DTLSOSSL_K_CONFIG,   /* _config */
    DTLSOSSL_K_N
};

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

static PyTypeObject *DtlsOssl_k_type = NULL; /* owned: the connection class */
static Py_ssize_t DtlsOssl_k[DTLSOSSL_K_N];
static PyObject *DtlsOssl_k_established = NULL; /* owned: ConnectionState.ESTABLISHED */
static PyObject *DtlsOssl_k_handshaking = NULL; /* owned: ConnectionState.HANDSHAKING */
static PyObject *DtlsOssl_k_new = NULL;         /* owned: ConnectionState.NEW */
static PyObject *DtlsOssl_k_server = NULL;      /* owned: Role.SERVER */
static PyObject *DtlsOssl_local = NULL;         /* owned: _binding.local (per-thread Scratch) */
/* owned: DtlsConnection.receive_datagram (the Python definition), ConnectionCore._first_outcome
   and ConnectionCore._handle_flags: what DtlsOssl_py_receive leaves to Python. */
static PyObject *DtlsOssl_receive_py = NULL, *DtlsOssl_first_py = NULL, *DtlsOssl_flags_py = NULL;
static PyObject *DtlsOssl_str_scratch = NULL, *DtlsOssl_str_logging = NULL; /* owned */
/* What the C __init__ (DtlsOssl_m_init) reads and sets besides the slots above. */
static PyObject *DtlsOssl_init_py = NULL;      /* owned: DtlsConnection.__init__ (Python) */
static PyObject *DtlsOssl_k_client = NULL;     /* owned: Role.CLIENT */
static PyTypeObject *DtlsOssl_cfg_type = NULL; /* owned: DtlsConfiguration */
static Py_ssize_t DtlsOssl_cfg[3]; /* its _key_log_writer, _conn_args, handshake_timeout */
static PyTypeObject *DtlsOssl_fp_type = NULL;  /* owned: Fingerprint */
static Py_ssize_t DtlsOssl_fp[2];              /* its algorithm and value */
static PyObject *DtlsOssl_md_index = NULL;     /* owned: {algorithm: DTLSOSSL_MD_* index} */
static Py_ssize_t DtlsOssl_n_initial = 0;      /* the slots every connection starts with: */
static Py_ssize_t *DtlsOssl_initial_at = NULL; /* owned: their offsets, */
static PyObject *DtlsOssl_initial = NULL;      /* owned: and their values (a tuple) */
static PyObject *DtlsOssl_empty = NULL;        /* owned: b"" (no expected digests) */
static PyTypeObject *DtlsOssl_sc_type = NULL;  /* owned: Scratch */
static Py_ssize_t DtlsOssl_sc_addr;            /* offset of Scratch.addr */
/* What completion builds: a class and the offsets of the slots it sets, in field order. */
static PyTypeObject *DtlsOssl_hc_type = NULL; /* owned: HandshakeCompleted */
static Py_ssize_t DtlsOssl_hc[6];
static PyTypeObject *DtlsOssl_keys_type = NULL; /* owned: SrtpKeys */
static Py_ssize_t DtlsOssl_keys[5];
static PyTypeObject *DtlsOssl_cert_type = NULL; /* owned: Certificate */
static Py_ssize_t DtlsOssl_cert[4];
static PyObject *DtlsOssl_profiles = NULL; /* owned: {IANA id: (SrtpProfile, key, salt length)} */
static PyObject *DtlsOssl_select = NULL;   /* owned: webrtc.sdp.select_fingerprints */

#define DTLSOSSL_K(self, i) (*(PyObject **)((char *)(self) + DtlsOssl_k[i]))

/* Store value (a new reference, or NULL: an error is set) in a slot. */
static int DtlsOssl_k_set(PyObject *self, int i, PyObject *value)
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

static PyObject *DtlsOssl_py_step(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
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

/* receive(conn, data, now): what DtlsConnection.receive_datagram's C method calls for a
   connection that is not established: a handshake flight (once the fingerprints are known) or
   a new server's ClientHello is fed here by step, counted, and the rest left to Python (the
   Python definition for anything else, _first_outcome when the first hello was not simply
   answered, _handle_flags for the bits step left). */
static PyObject *DtlsOssl_py_receive(PyObject *m, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    PyObject *conn, *state, *expected, *sc, *n, *deadline, *timeout, *call[4], *r;
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
            call[0] = conn;
            call[1] = PyLong_FromLong(flags);
            call[2] = args[2];
            call[3] = sc;
            r = call[1] == NULL ? NULL : PyObject_Vectorcall(DtlsOssl_first_py, call, 4, NULL);
            Py_XDECREF(call[1]);
            Py_DECREF(sc);
            return r;
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
    call[0] = conn;
    call[1] = PyLong_FromLong(flags);
    call[2] = args[2];
    call[3] = sc;
    r = call[1] == NULL ? NULL : PyObject_Vectorcall(DtlsOssl_flags_py, call, 4, NULL);
    Py_XDECREF(call[1]);
    Py_DECREF(sc);
    return r;
python:
    return PyObject_Vectorcall(DtlsOssl_receive_py, args, (size_t)nargs, kwnames);
}

/* complete(conn, scratch): _handshake_completed's C half, for a completion step left to Python
   (the first flight of a held one, a call that also saw an alert). Returns 0 when the event is
   queued and the connection ESTABLISHED, else why not: 1 exporting the keying material failed
   (the ERR queue says why), 2 the peer sent no certificate, 3 it was not checked, 4 the
   connection ended meanwhile. */
static PyObject *DtlsOssl_py_complete(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
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

/* func(self, *args, **kwnames) for a call with more arguments than fit a small stack. */
static PyObject *DtlsOssl_call_with_self(PyObject *func, PyObject *self, PyObject *const *args,
                                         Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *bound = PyMethod_New(func, self), *r;
    if (bound == NULL)
        return NULL;
    r = PyObject_Vectorcall(bound, args, (size_t)nargs, kwnames);
    Py_DECREF(bound);
    return r;
}

/* Make conn's C object (DtlsOssl_conn_new) from args (ctx, mtu, initial_us, max_us: the
   configuration's _conn_args) and the rest, and store it in _ref and _addr. Returns 1, 0 if
   OpenSSL failed (the ERR queue says why), -1 with an error set. */
static int DtlsOssl_make(PyObject *conn, PyObject *args, int is_server, void *handle, long check,
                         long md, PyObject *digests)
{
    PyObject *addr;
    DtlsOssl_Ref *ref;
    DtlsOssl_conn *c;
    Py_buffer view;
    void *ctx;
    size_t mtu;
    unsigned long initial, max;
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) != 4) {
        PyErr_SetString(PyExc_TypeError, "conn_new: expected (ctx, mtu, initial_us, max_us)");
        return -1;
    }
    ctx = PyLong_AsVoidPtr(PyTuple_GET_ITEM(args, 0));
    mtu = PyLong_AsSize_t(PyTuple_GET_ITEM(args, 1));
    initial = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(args, 2));
    max = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(args, 3));
    if (PyErr_Occurred())
        return -1;
    if (ctx == NULL || initial > UINT_MAX || max > UINT_MAX || check < 0 || check > INT_MAX
        || md < 0 || md > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "conn_new: argument out of range");
        return -1;
    }
    if (DtlsOssl_borrow(digests, &view) < 0)
        return -1;
    c = DtlsOssl_conn_new((SSL_CTX *)ctx, is_server, mtu, (unsigned int)initial, (unsigned int)max,
                          handle, (int)check, (int)md, (const unsigned char *)view.buf,
                          (size_t)view.len);
    DtlsOssl_unborrow(&view);
    if (c == NULL)
        return 0;
    if ((ref = PyObject_New(DtlsOssl_Ref, DtlsOssl_RefType)) == NULL) {
        DtlsOssl_conn_free(c);
        return -1;
    }
    ref->c = c;
    if ((addr = PyLong_FromVoidPtr(c)) == NULL) {
        Py_DECREF(ref);
        return -1;
    }
    /* _addr first: whatever _ref held is freed as it is replaced. */
    DtlsOssl_k_set(conn, DTLSOSSL_K_ADDR, addr);
    DtlsOssl_k_set(conn, DTLSOSSL_K_REF, (PyObject *)ref);
    return 1;
}

/* conn_new(conn, (ctx, mtu, initial_us, max_us), is_server, handle, check, md, digests): make
   conn's C object (ctx is the SSL_CTX's address, handle the key-log handle's or None, digests
   the expected digests end to end) and store it in _ref and _addr. False if OpenSSL failed
   (the ERR queue says why). */
static PyObject *DtlsOssl_py_conn_new(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    void *handle = NULL;
    long check, md;
    int is_server, r;
    (void)m;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "conn_new(conn, (ctx, mtu, initial_us, max_us), "
                                         "is_server, handle, check, md, digests)");
        return NULL;
    }
    if (DtlsOssl_k_type == NULL || !PyObject_TypeCheck(args[0], DtlsOssl_k_type)) {
        PyErr_SetString(PyExc_TypeError, "conn_new: not a connection (or step_setup not called)");
        return NULL;
    }
    is_server = PyObject_IsTrue(args[2]);
    if (args[3] != Py_None)
        handle = PyLong_AsVoidPtr(args[3]);
    check = PyLong_AsLong(args[4]);
    md = PyLong_AsLong(args[5]);
    if (is_server < 0 || PyErr_Occurred())
        return NULL;
    r = DtlsOssl_make(args[0], args[1], is_server, handle, check, md, args[6]);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* __init__ of a connection for its usual call, DtlsConnection(configuration, role=...,
   remote_fingerprints=[one Fingerprint] or None) with no key log: the state the Python
   definition makes (the reference: it also raises every error), set here in one call.
   Any other call, or an OpenSSL failure, goes to the Python definition. */
static PyObject *DtlsOssl_m_init(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    PyObject *config, *role = NULL, *fps = Py_None, *expected = NULL, *fp, *digests, *md, *name;
    PyObject *stack[4], *out = NULL, *events = NULL;
    Py_ssize_t i;
    long check = DTLSOSSL_CHECK_UNKNOWN, index = 0;
    int r;
    if (nargs != 1 || kwnames == NULL || PyTuple_GET_SIZE(kwnames) > 2 || DtlsOssl_init_py == NULL
        || !PyObject_TypeCheck(self, DtlsOssl_k_type))
        goto python;
    for (i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
        name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "role") == 0)
            role = args[nargs + i];
        else if (PyUnicode_CompareWithASCIIString(name, "remote_fingerprints") == 0)
            fps = args[nargs + i];
        else
            goto python;
    }
    config = args[0];
    if ((role != DtlsOssl_k_client && role != DtlsOssl_k_server)
        || Py_TYPE(config) != DtlsOssl_cfg_type
        || *(PyObject **)((char *)config + DtlsOssl_cfg[0]) != Py_None)
        goto python;
    digests = Py_None;
    if (fps != Py_None) {
        if (PyTuple_CheckExact(fps) && PyTuple_GET_SIZE(fps) == 1)
            expected = Py_NewRef(fps);
        else if (PyList_CheckExact(fps) && PyList_GET_SIZE(fps) == 1)
            expected = PyTuple_Pack(1, PyList_GET_ITEM(fps, 0));
        else
            goto python;
        if (expected == NULL)
            return NULL;
        fp = PyTuple_GET_ITEM(expected, 0);
        if (Py_TYPE(fp) != DtlsOssl_fp_type)
            goto python_expected;
        md =
            PyDict_GetItemWithError(DtlsOssl_md_index, *(PyObject **)((char *)fp + DtlsOssl_fp[0]));
        if (md == NULL) {
            if (PyErr_Occurred())
                goto fail;
            goto python_expected;
        }
        if ((index = PyLong_AsLong(md)) == -1 && PyErr_Occurred())
            goto fail;
        digests = *(PyObject **)((char *)fp + DtlsOssl_fp[1]);
        check = DTLSOSSL_CHECK_FINGERPRINTS;
    } else {
        expected = Py_NewRef(Py_None);
    }
    if ((out = PyList_New(0)) == NULL || (events = PyList_New(0)) == NULL)
        goto fail;
    r = DtlsOssl_make(self, *(PyObject **)((char *)config + DtlsOssl_cfg[1]),
                      role == DtlsOssl_k_server, NULL, check, index,
                      digests == Py_None ? DtlsOssl_empty : digests);
    if (r < 0)
        goto fail;
    if (r == 0) { /* OpenSSL failed: the Python definition raises it */
        Py_DECREF(out);
        Py_DECREF(events);
        goto python_expected;
    }
    for (i = 0; i < DtlsOssl_n_initial; i++)
        Py_XSETREF(*(PyObject **)((char *)self + DtlsOssl_initial_at[i]),
                   Py_NewRef(PyTuple_GET_ITEM(DtlsOssl_initial, i)));
    DtlsOssl_k_set(self, DTLSOSSL_K_CONFIG, Py_NewRef(config));
    DtlsOssl_k_set(self, DTLSOSSL_K_ROLE, Py_NewRef(role));
    DtlsOssl_k_set(self, DTLSOSSL_K_EXPECTED, expected);
    DtlsOssl_k_set(self, DTLSOSSL_K_TIMEOUT,
                   Py_NewRef(*(PyObject **)((char *)config + DtlsOssl_cfg[2])));
    DtlsOssl_k_set(self, DTLSOSSL_K_OUT, out);
    DtlsOssl_k_set(self, DTLSOSSL_K_EVENTS, events);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(out);
    Py_XDECREF(events);
    Py_DECREF(expected);
    return NULL;
python_expected:
    Py_DECREF(expected);
python:
    if (DtlsOssl_init_py == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dtls_ossl: step_setup was not called");
        return NULL;
    }
    if (nargs + (kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0) > 3)
        return DtlsOssl_call_with_self(DtlsOssl_init_py, self, args, nargs, kwnames);
    stack[0] = self;
    for (i = 0; i < nargs + (kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0); i++)
        stack[i + 1] = args[i];
    return PyObject_Vectorcall(DtlsOssl_init_py, stack, (size_t)nargs + 1, kwnames);
}

static PyMethodDef DtlsOssl_init_def = {"__init__", (PyCFunction)(void (*)(void))DtlsOssl_m_init,
                                        METH_FASTCALL | METH_KEYWORDS, NULL};

/* conn_free(conn): free conn's C object now (it ended), after setting _addr to 0. */
static PyObject *DtlsOssl_py_conn_free(PyObject *m, PyObject *conn)
{
    PyObject *ref;
    (void)m;
    if (DtlsOssl_k_type == NULL || !PyObject_TypeCheck(conn, DtlsOssl_k_type)) {
        PyErr_SetString(PyExc_TypeError, "conn_free: not a connection");
        return NULL;
    }
    DtlsOssl_k_set(conn, DTLSOSSL_K_ADDR, PyLong_FromLong(0)); /* a cached small int */
    ref = DTLSOSSL_K(conn, DTLSOSSL_K_REF);
    if (ref != NULL && Py_TYPE(ref) == DtlsOssl_RefType) {
        DtlsOssl_conn_free(((DtlsOssl_Ref *)ref)->c);
        ((DtlsOssl_Ref *)ref)->c = NULL;
    }
    DtlsOssl_k_set(conn, DTLSOSSL_K_REF, Py_NewRef(Py_None));
    Py_RETURN_NONE;
}

/* The offsets of the n slots named in names (a sequence of str), attributes of type. */
static int DtlsOssl_offsets(PyObject *type, PyObject *names, Py_ssize_t n, Py_ssize_t *offsets)
{
    PyObject *seq, *d;
    Py_ssize_t i;
    int r = 0;
    if (!PyType_Check(type) || (seq = PySequence_Tuple(names)) == NULL)
        return -1;
    if (PyTuple_GET_SIZE(seq) != n) {
        PyErr_Format(PyExc_TypeError, "step_setup: %R has not %zd fields", type, n);
        r = -1;
    }
    for (i = 0; r == 0 && i < n; i++) {
        if ((d = PyObject_GetAttr(type, PyTuple_GET_ITEM(seq, i))) == NULL)
            r = -1;
        else if ((offsets[i] = DtlsOssl_slot_offset(d)) < 0)
            r = -1;
        Py_XDECREF(d);
    }
    Py_DECREF(seq);
    return r;
}

/* The object named name in the dict objects, as a new reference, or NULL with an error. */
static PyObject *DtlsOssl_named(PyObject *objects, const char *name)
{
    PyObject *o = PyDict_GetItemString(objects, name);
    if (o == NULL)
        PyErr_Format(PyExc_KeyError, "step_setup: %s missing", name);
    return Py_XNewRef(o);
}

/* step_setup's part for the C __init__: init, client, configuration (the class), fingerprint
   (the class), md_index and initial ({slot name: value} of the connection). */
static int DtlsOssl_init_setup(PyObject *cls, PyObject *d)
{
    PyObject *names, *cfg, *fp, *initial, *key, *value;
    Py_ssize_t pos = 0, i = 0;
    int r;
    if ((DtlsOssl_init_py = DtlsOssl_named(d, "init")) == NULL
        || (DtlsOssl_k_client = DtlsOssl_named(d, "client")) == NULL
        || (DtlsOssl_md_index = DtlsOssl_named(d, "md_index")) == NULL
        || (DtlsOssl_empty = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        return -1;
    if ((cfg = DtlsOssl_named(d, "configuration")) == NULL)
        return -1;
    if ((names = Py_BuildValue("(sss)", "_key_log_writer", "_conn_args", "handshake_timeout"))
        == NULL) {
        Py_DECREF(cfg);
        return -1;
    }
    r = DtlsOssl_offsets(cfg, names, 3, DtlsOssl_cfg);
    Py_DECREF(names);
    if (r < 0) {
        Py_DECREF(cfg);
        return -1;
    }
    DtlsOssl_cfg_type = (PyTypeObject *)cfg;
    if ((fp = DtlsOssl_named(d, "fingerprint")) == NULL)
        return -1;
    if ((names = PyObject_GetAttrString(fp, "__match_args__")) == NULL) {
        Py_DECREF(fp);
        return -1;
    }
    r = DtlsOssl_offsets(fp, names, 2, DtlsOssl_fp);
    Py_DECREF(names);
    if (r < 0) {
        Py_DECREF(fp);
        return -1;
    }
    DtlsOssl_fp_type = (PyTypeObject *)fp;
    if ((initial = DtlsOssl_named(d, "initial")) == NULL)
        return -1;
    if (!PyDict_Check(initial) || (DtlsOssl_n_initial = PyDict_Size(initial)) <= 0
        || (DtlsOssl_initial = PyTuple_New(DtlsOssl_n_initial)) == NULL
        || (DtlsOssl_initial_at = PyMem_RawMalloc(sizeof(Py_ssize_t) * (size_t)DtlsOssl_n_initial))
               == NULL
        || (names = PyTuple_New(DtlsOssl_n_initial)) == NULL) {
        Py_DECREF(initial);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "step_setup: initial must be a non-empty dict");
        return -1;
    }
    while (PyDict_Next(initial, &pos, &key, &value)) {
        PyTuple_SET_ITEM(names, i, Py_NewRef(key));
        PyTuple_SET_ITEM(DtlsOssl_initial, i, Py_NewRef(value));
        i++;
    }
    r = DtlsOssl_offsets(cls, names, DtlsOssl_n_initial, DtlsOssl_initial_at);
    Py_DECREF(names);
    Py_DECREF(initial);
    return r;
}

/* install_init(cls, doc): make the C __init__ (with doc, its text signature first) cls's. */
static PyObject *DtlsOssl_py_install_init(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *descr, *method;
    const char *text;
    char *copy;
    Py_ssize_t n;
    (void)m;
    if (nargs != 2 || !PyType_Check(args[0]) || !PyUnicode_Check(args[1])
        || DtlsOssl_init_def.ml_doc != NULL || DtlsOssl_k_type == NULL
        || !PyType_IsSubtype((PyTypeObject *)args[0], DtlsOssl_k_type)) {
        PyErr_SetString(PyExc_TypeError, "install_init(cls, doc): once, after step_setup");
        return NULL;
    }
    if ((text = PyUnicode_AsUTF8AndSize(args[1], &n)) == NULL)
        return NULL;
    if ((copy = malloc((size_t)n + 1)) == NULL) /* owned: for the life of the process */
        return PyErr_NoMemory();
    memcpy(copy, text, (size_t)n + 1);
    DtlsOssl_init_def.ml_doc = copy;
    /* The method descriptor goes in an instancemethod: inspect.signature(cls) from Python 3.14
       binds __init__ to the class itself (inspect._descriptor_get), which a method descriptor
       refuses ("doesn't apply to a 'type' object") and an instancemethod allows. Calls cost
       one bound method object more, once per connection. */
    descr = PyDescr_NewMethod((PyTypeObject *)args[0], &DtlsOssl_init_def);
    if (descr == NULL)
        return NULL;
    method = PyInstanceMethod_New(descr);
    Py_DECREF(descr);
    if (method == NULL || PyObject_SetAttrString(args[0], "__init__", method) < 0) {
        Py_XDECREF(method);
        return NULL;
    }
    Py_DECREF(method);
    Py_RETURN_NONE;
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
static PyObject *DtlsOssl_py_step_setup(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *names, *d, *match;
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
    for (i = 0; i < DTLSOSSL_K_N; i++)
        PyTuple_SET_ITEM(names, i, PyUnicode_FromString(DtlsOssl_k_names[i]));
    i = DtlsOssl_offsets(args[0], names, DTLSOSSL_K_N, DtlsOssl_k);
    Py_DECREF(names);
    if (i < 0)
        return NULL;
    if ((names = Py_BuildValue("(s)", "addr")) == NULL)
        return NULL;
    i = DtlsOssl_offsets(args[1], names, 1, sc_addr);
    Py_DECREF(names);
    if (i < 0)
        return NULL;
    if ((match = PyObject_GetAttrString(args[2], "__match_args__")) == NULL)
        return NULL;
    i = DtlsOssl_offsets(args[2], match, 6, DtlsOssl_hc);
    Py_DECREF(match);
    if (i < 0 || (match = PyObject_GetAttrString(args[3], "__match_args__")) == NULL)
        return NULL;
    i = DtlsOssl_offsets(args[3], match, 5, DtlsOssl_keys);
    Py_DECREF(match);
    if (i < 0
        || (names = Py_BuildValue("(ssss)", "_der", "_fingerprints", "_key_der", "_x509")) == NULL)
        return NULL;
    i = DtlsOssl_offsets(args[4], names, 4, DtlsOssl_cert);
    Py_DECREF(names);
    if (i < 0 || (DtlsOssl_RefType = (PyTypeObject *)PyType_FromSpec(&DtlsOssl_ref_spec)) == NULL)
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
    {"record_fill", (PyCFunction)(void (*)(void))DtlsOssl_py_record_fill, METH_FASTCALL,
     "record_fill(obj, slots, *values): set obj's slots, one value each"},
    {"install_methods", (PyCFunction)(void (*)(void))DtlsOssl_py_install_methods, METH_FASTCALL,
     "install_methods(cls, slots, established, outcomes, docs, queue): the per-record verbs "
     "in C"},
    {"step", (PyCFunction)(void (*)(void))DtlsOssl_py_step, METH_FASTCALL,
     "step(conn, scratch, op, datagram, now) -> status bits left"},
    {"complete", (PyCFunction)(void (*)(void))DtlsOssl_py_complete, METH_FASTCALL,
     "complete(conn, scratch) -> 0, or why Python must complete the handshake"},
    {"conn_new", (PyCFunction)(void (*)(void))DtlsOssl_py_conn_new, METH_FASTCALL,
     "conn_new(conn, (ctx, mtu, initial_us, max_us), is_server, handle, check, md, digests) "
     "-> bool"},
    {"conn_free", DtlsOssl_py_conn_free, METH_O, "conn_free(conn): free its C object now"},
    {"install_init", (PyCFunction)(void (*)(void))DtlsOssl_py_install_init, METH_FASTCALL,
     "install_init(cls, doc): the C __init__ of the usual call in front of cls's"},
    {"receive", (PyCFunction)(void (*)(void))DtlsOssl_py_receive, METH_FASTCALL | METH_KEYWORDS,
     "receive(conn, data, now): receive_datagram of a connection not established"},
    {"step_setup", (PyCFunction)(void (*)(void))DtlsOssl_py_step_setup, METH_FASTCALL,
     "step_setup(conn_class, scratch_class, completed_class, keys_class, certificate_class, "
     "objects)"},
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
