/* The table of the module's CPython functions, and DtlsOssl_install_fast, which adds them to
   dtls_ossl._openssl once at import. A file of its own because it names a function of every
   other Python-facing file: each of those stays free of the others' details. */
#include <Python.h>

#include "pyglue.h"

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
