/* The per-record paths of an established connection as CPython functions: fast_send,
   fast_receive and their batch forms, the C methods in place of DtlsConnection's four
   per-record verbs, and record_fill. This is the module's hot path, everything in it run once
   per record on driver.c's per-record cores; the handshake's CPython side is in step.c. */
#include <Python.h>

#include "pyglue.h"

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

DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_fast_send(PyObject *m, PyObject *const *args,
                                                    Py_ssize_t nargs)
{
    (void)m;
    return DtlsOssl_py_one(args, nargs, 3, "fast_send(conn, data, out)", DtlsOssl_send_one);
}

DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_fast_receive(PyObject *m, PyObject *const *args,
                                                       Py_ssize_t nargs)
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
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_fast_send_many(PyObject *m, PyObject *const *args,
                                                         Py_ssize_t nargs)
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
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_fast_receive_many(PyObject *m, PyObject *const *args,
                                                            Py_ssize_t nargs)
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
DTLSOSSL_SHARED_DEF Py_ssize_t DtlsOssl_slot_offset(PyObject *descr)
{
    if (!PyObject_TypeCheck(descr, &PyMemberDescr_Type)
        || ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
        PyErr_SetString(PyExc_TypeError, "install_methods: expected a __slots__ descriptor");
        return -1;
    }
    return ((PyMemberDescrObject *)descr)->d_member->offset;
}

/* install_methods(cls, slots, established, outcomes, docs, queue): slots are the member
   descriptors of _state, _addr, _out, _events and _ev_head; established is
   ConnectionState.ESTABLISHED; outcomes are _fast_send_outcome and _fast_receive_outcome; docs
   the four methods' docstrings (with their text signatures); queue is (_POP_FRONT_MAX,
   _COMPACT_AT). Replaces cls.send, cls.receive_datagram, cls.datagrams_to_send and
   cls.next_event, keeping each for the cases the C method does not handle. Once per process. */
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_install_methods(PyObject *m, PyObject *const *args,
                                                          Py_ssize_t nargs)
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
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_record_fill(PyObject *m, PyObject *const *args,
                                                      Py_ssize_t nargs)
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
