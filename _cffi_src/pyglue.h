/* What the Python-facing files (pool.c, fastpath.c, step.c, conninit.c, module.c) share with
   one another and with nothing else: the helpers that move bytes between Python and C, the
   connection's slots as step_setup finds them, and each file's CPython functions for the table
   in module.c. A header of its own so that the OpenSSL glue never sees Python.h. Everything
   here is DTLSOSSL_SHARED (dtls_ossl.h): static in the module, as when these were one file. */
#ifndef DTLSOSSL_PYGLUE_H
#define DTLSOSSL_PYGLUE_H

#include <Python.h>
#include <structmember.h>

#include "dtls_ossl.h"

/* pool.c: arguments in, datagrams and events out. */
DTLSOSSL_SHARED DtlsOssl_conn *DtlsOssl_conn_arg(PyObject *o);
DTLSOSSL_SHARED int DtlsOssl_borrow(PyObject *o, Py_buffer *view);
DTLSOSSL_SHARED void DtlsOssl_unborrow(Py_buffer *view);
DTLSOSSL_SHARED int DtlsOssl_collect(DtlsOssl_scratch *s, int flags, PyObject *out,
                                     PyObject *events);
DTLSOSSL_SHARED int DtlsOssl_collect_records(DtlsOssl_scratch *s, int flags, PyObject *out,
                                             PyObject *events);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_fast_setup(PyObject *m, PyObject *const *args,
                                                 Py_ssize_t nargs);

/* fastpath.c: the per-record paths. */
DTLSOSSL_SHARED PyObject *DtlsOssl_py_fast_send(PyObject *m, PyObject *const *args,
                                                Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_fast_receive(PyObject *m, PyObject *const *args,
                                                   Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_fast_send_many(PyObject *m, PyObject *const *args,
                                                     Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_fast_receive_many(PyObject *m, PyObject *const *args,
                                                        Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_install_methods(PyObject *m, PyObject *const *args,
                                                      Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_record_fill(PyObject *m, PyObject *const *args,
                                                  Py_ssize_t nargs);
DTLSOSSL_SHARED Py_ssize_t DtlsOssl_slot_offset(PyObject *descr);

/* step.c: the handshake path, and the connection's slots it finds (step_setup). */
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

typedef struct {
    PyObject ob_base;
    DtlsOssl_conn *c; /* owned: NULL once freed */
} DtlsOssl_Ref;

#define DTLSOSSL_K(self, i) (*(PyObject **)((char *)(self) + DtlsOssl_k[i]))

DTLSOSSL_SHARED PyTypeObject *DtlsOssl_RefType;
DTLSOSSL_SHARED PyTypeObject *DtlsOssl_k_type;
DTLSOSSL_SHARED Py_ssize_t DtlsOssl_k[DTLSOSSL_K_N];
DTLSOSSL_SHARED PyObject *DtlsOssl_k_server;
DTLSOSSL_SHARED int DtlsOssl_k_set(PyObject *self, int i, PyObject *value);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_step(PyObject *m, PyObject *const *args, Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_complete(PyObject *m, PyObject *const *args,
                                               Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_step_setup(PyObject *m, PyObject *const *args,
                                                 Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_receive(PyObject *m, PyObject *const *args, Py_ssize_t nargs,
                                              PyObject *kwnames);

/* conninit.c: the connection's C object, its C __init__, and the setup helpers. */
/* names: a new reference, consumed (NULL: the call that built it failed). */
DTLSOSSL_SHARED int DtlsOssl_offsets(PyObject *type, PyObject *names, Py_ssize_t n,
                                     Py_ssize_t *offsets);
DTLSOSSL_SHARED PyObject *DtlsOssl_named(PyObject *objects, const char *name);
DTLSOSSL_SHARED int DtlsOssl_init_setup(PyObject *cls, PyObject *d);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_conn_new(PyObject *m, PyObject *const *args,
                                               Py_ssize_t nargs);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_conn_free(PyObject *m, PyObject *conn);
DTLSOSSL_SHARED PyObject *DtlsOssl_py_install_init(PyObject *m, PyObject *const *args,
                                                   Py_ssize_t nargs);

#endif /* DTLSOSSL_PYGLUE_H */
