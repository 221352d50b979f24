/* How bytes cross between Python and C: the bytes-like arguments borrowed without a copy, and
   the datagrams and DataReceived events handed back from pools of reusable objects (with
   fast_setup, which names the event class the pools build). Every other Python-facing file
   uses these, so they come first in the module; the pools' invariants are subtle enough to be
   read on their own. */
#include <Python.h>

#include "pyglue.h"

static PyTypeObject *DtlsOssl_event_type = NULL; /* owned: events.DataReceived */
static PyObject *DtlsOssl_event_data = NULL;     /* owned: its slot descriptor for "data" */
static Py_ssize_t DtlsOssl_event_data_at = 0;    /* the slot's offset; 0: use the descriptor */
static int DtlsOssl_event_pooled = 0; /* the events may be pooled (DtlsOssl_py_fast_setup) */

DTLSOSSL_SHARED_DEF DtlsOssl_conn *DtlsOssl_conn_arg(PyObject *o)
{
    DtlsOssl_conn *c = (DtlsOssl_conn *)PyLong_AsVoidPtr(o);
    if (c == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "dtls_ossl: the connection has no C object");
    return c;
}

/* Borrow the bytes of a bytes-like object until DtlsOssl_unborrow (bytes need no Py_buffer). */
DTLSOSSL_SHARED_DEF int DtlsOssl_borrow(PyObject *o, Py_buffer *view)
{
    if (PyBytes_CheckExact(o)) {
        view->obj = NULL;
        view->buf = PyBytes_AS_STRING(o);
        view->len = PyBytes_GET_SIZE(o);
        return 0;
    }
    return PyObject_GetBuffer(o, view, PyBUF_SIMPLE);
}

DTLSOSSL_SHARED_DEF void DtlsOssl_unborrow(Py_buffer *view)
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
DTLSOSSL_SHARED_DEF int DtlsOssl_collect(DtlsOssl_scratch *s, int flags, PyObject *out,
                                         PyObject *events)
{
    return DtlsOssl_collect_into(s, flags, out, events, 0);
}

/* The records of an established connection: their bytes come from the pools. */
DTLSOSSL_SHARED_DEF int DtlsOssl_collect_records(DtlsOssl_scratch *s, int flags, PyObject *out,
                                                 PyObject *events)
{
    return DtlsOssl_collect_into(s, flags, out, events, 1);
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
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_fast_setup(PyObject *m, PyObject *const *args,
                                                     Py_ssize_t nargs)
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
