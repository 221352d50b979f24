/* A connection's C object from the Python side: conn_new and conn_free (its owner in _ref, its
   address in _addr), and the C twin of DtlsConnection.__init__ for the usual call, with the
   part of step_setup that configures it. Apart from step.c because it runs once per
   connection, before any flight, and reads the configuration rather than the handshake. */
#include <Python.h>

#include "pyglue.h"

/* What the C __init__ (DtlsOssl_m_init) reads and sets besides the connection's slots. */
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
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_conn_new(PyObject *m, PyObject *const *args,
                                                   Py_ssize_t nargs)
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
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_conn_free(PyObject *m, PyObject *conn)
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

/* The offsets of the n slots named in names (a sequence of str), attributes of type. names is
   a new reference that this consumes, so a caller passes the call that builds it; NULL (that
   call failed) returns -1 with its error. */
DTLSOSSL_SHARED_DEF int DtlsOssl_offsets(PyObject *type, PyObject *names, Py_ssize_t n,
                                         Py_ssize_t *offsets)
{
    PyObject *seq, *d;
    Py_ssize_t i;
    int r = 0;
    if (names == NULL)
        return -1;
    seq = PySequence_Tuple(names);
    Py_DECREF(names);
    if (seq == NULL)
        return -1;
    if (!PyType_Check(type)) {
        PyErr_Format(PyExc_TypeError, "step_setup: %R is not a class", type);
        r = -1;
    } else if (PyTuple_GET_SIZE(seq) != n) {
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
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_named(PyObject *objects, const char *name)
{
    PyObject *o = PyDict_GetItemString(objects, name);
    if (o == NULL)
        PyErr_Format(PyExc_KeyError, "step_setup: %s missing", name);
    return Py_XNewRef(o);
}

/* step_setup's part for the C __init__: init, client, configuration (the class), fingerprint
   (the class), md_index and initial ({slot name: value} of the connection). */
DTLSOSSL_SHARED_DEF int DtlsOssl_init_setup(PyObject *cls, PyObject *d)
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
    names = Py_BuildValue("(sss)", "_key_log_writer", "_conn_args", "handshake_timeout");
    if (DtlsOssl_offsets(cfg, names, 3, DtlsOssl_cfg) < 0) {
        Py_DECREF(cfg);
        return -1;
    }
    DtlsOssl_cfg_type = (PyTypeObject *)cfg;
    if ((fp = DtlsOssl_named(d, "fingerprint")) == NULL)
        return -1;
    if (DtlsOssl_offsets(fp, PyObject_GetAttrString(fp, "__match_args__"), 2, DtlsOssl_fp) < 0) {
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
    Py_DECREF(initial);
    return r;
}

/* install_init(cls, doc): make the C __init__ (with doc, its text signature first) cls's. */
DTLSOSSL_SHARED_DEF PyObject *DtlsOssl_py_install_init(PyObject *m, PyObject *const *args,
                                                       Py_ssize_t nargs)
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
