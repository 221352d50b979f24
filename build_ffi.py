"""cffi API-mode (out-of-line) build of ``dtls_ossl._openssl`` against the system OpenSSL.

The C is C, in ``_cffi_src/`` (as pyca/cryptography keeps its own), one concern per file:
``dtls_ossl.h`` declares the structs, status bits and functions once; ``engine.c`` (BIOs,
callbacks, set-up, framing), ``screen.c`` (untrusted datagrams) and ``driver.c`` (the calls) are
the OpenSSL glue, without ``Python.h``; ``pyglue.h`` is what the CPython files share: ``pool.c``
(arguments, pooled datagrams and events), ``fastpath.c`` (per-record paths), ``step.c``
(handshake path), ``conninit.c`` (the C object, the C ``__init__``) and ``module.c`` (the table
of functions). They are compiled as one translation unit with cffi's wrappers, through
``#include``, so diagnostics name the real files and lines. The cdef below is only what Python
calls or reads.

Point the build at another OpenSSL with the standard ``CFLAGS``/``LDFLAGS``, e.g.
``CFLAGS=-I/opt/ossl/include LDFLAGS="-L/opt/ossl/lib64 -Wl,-rpath,/opt/ossl/lib64"``.
``DTLS_OSSL_WERROR=1`` turns the warnings of our C into errors (CI sets it).

Run ``python build_ffi.py`` to compile in place for development.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

SRC = Path(__file__).resolve().parent / "_cffi_src"
# In the order they are compiled in, as one translation unit: the OpenSSL glue, then the CPython
# side, module.c last (it names a function of every other CPython file).
C_FILES = (
    "dtls_ossl.h",
    "engine.c",
    "screen.c",
    "driver.c",
    "pyglue.h",
    "pool.c",
    "fastpath.c",
    "step.c",
    "conninit.c",
    "module.c",
)

# In extra_compile_args, so that a CFLAGS environment (which replaces Python's own flags) keeps
# them. Hidden visibility: the module exports PyInit__openssl and nothing else.
WARNINGS = ["-Wall", "-Wextra", "-Wconversion"]
COMPILE_ARGS = ["-O2", "-fvisibility=hidden", *WARNINGS]

CDEF = """
typedef ... SSL_CTX;
typedef ... SSL;
typedef ... SSL_METHOD;

static const uint64_t SSL_OP_NO_QUERY_MTU;
static const uint64_t SSL_OP_NO_RENEGOTIATION;
static const uint64_t SSL_OP_NO_TICKET;
static const uint64_t SSL_OP_NO_COMPRESSION;
static const uint64_t SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t SSL_OP_NO_ENCRYPT_THEN_MAC;
static const long SSL_SESS_CACHE_OFF;
static const int DTLS1_2_VERSION;
static const int OPENSSL_VERSION;
static const long OPENSSL_VERSION_NUMBER;

static const int DtlsOssl_HAS_DTLS_1_3;
static const int DtlsOssl_DTLS1_3_VERSION;

static const int DTLSOSSL_WIRE;
static const int DTLSOSSL_PLAIN;
static const int DTLSOSSL_HANDSHAKE_DONE;
static const int DTLSOSSL_PEER_CLOSED;
static const int DTLSOSSL_FATAL;
static const int DTLSOSSL_ALERTS;
static const int DTLSOSSL_DROPPED;
static const int DTLSOSSL_TIMER;
static const int DTLSOSSL_RETRANSMITTED;
static const int DTLSOSSL_OVERFLOW;
static const int DTLSOSSL_CALLBACK;
static const int DTLSOSSL_TOO_BIG;
static const int DTLSOSSL_NO_SCRATCH;
static const int DTLSOSSL_COMPLETED;
static const int DTLSOSSL_MAX_SRTP_MATERIAL;
static const int DTLSOSSL_CHECK_UNKNOWN;
static const int DTLSOSSL_CHECK_FINGERPRINTS;
static const int DTLSOSSL_CHECK_INSECURE;
static const int DTLSOSSL_VERDICT_NONE;
static const int DTLSOSSL_VERDICT_REJECTED;

typedef struct {
    uintptr_t addr;
    SSL *ssl;
    void *handle;
    long timeout_us;
    int n_alerts;
    int alerts[...];
    unsigned long n_fast_received;
    unsigned long n_framed;
    int verdict;
    unsigned int actual_len;
    unsigned char actual[...];
    ...;
} DtlsOssl_conn;

typedef struct {
    char *wire;            size_t wire_cap;  size_t wire_len;
    int *dgram_ends;       int dgram_cap;    int n_dgrams;
    char *plain;           size_t plain_cap;
    int *rec_ends;         int rec_cap;      int n_recs;
    int dropped;
    ...;
} DtlsOssl_scratch;

const SSL_METHOD *DTLS_method(void);
SSL_CTX *SSL_CTX_new(const SSL_METHOD *);
void SSL_CTX_free(SSL_CTX *);
uint64_t SSL_CTX_set_options(SSL_CTX *, uint64_t);
long SSL_CTX_set_min_proto_version(SSL_CTX *, int);   /* macros: SSL_CTX_ctrl is long */
long SSL_CTX_set_max_proto_version(SSL_CTX *, int);
int SSL_CTX_set_cipher_list(SSL_CTX *, const char *);
long SSL_CTX_set1_groups_list(SSL_CTX *, const char *);
long SSL_CTX_set_session_cache_mode(SSL_CTX *, long);    /* macro */
long SSL_CTX_set_max_cert_list(SSL_CTX *, long);         /* macro */
int SSL_CTX_set_tlsext_use_srtp(SSL_CTX *, const char *); /* returns 0 on success */
SSL_CTX *SSL_get_SSL_CTX(const SSL *);
int SSL_export_keying_material(SSL *, unsigned char *, size_t, const char *, size_t,
                               const unsigned char *, size_t, int);
long SSL_get_verify_result(const SSL *);
const char *X509_verify_cert_error_string(long);

unsigned long ERR_get_error(void);
void ERR_clear_error(void);
/* The tests put another library's error in the queue with these (ERR_raise is a macro). */
void ERR_new(void);
void ERR_set_error(int, int, const char *, ...);
static const int ERR_LIB_SYS;
static const int ERR_LIB_USER;
const char *ERR_lib_error_string(unsigned long);
const char *ERR_reason_error_string(unsigned long);
void ERR_error_string_n(unsigned long, char *, size_t);
const char *OpenSSL_version(int);
unsigned long OpenSSL_version_num(void);

/* _cffi_src/dtls_ossl.h says what each does. */
int DtlsOssl_init(void);
int DtlsOssl_ctx_setup(SSL_CTX *, const unsigned char *, int, const unsigned char *, int, int);
DtlsOssl_conn *DtlsOssl_conn_new(SSL_CTX *, int, size_t, unsigned int, unsigned int, void *,
                                 int, int, const unsigned char *, size_t);
int DtlsOssl_set_expected(DtlsOssl_conn *, int, int, const unsigned char *, size_t);
void DtlsOssl_conn_free(DtlsOssl_conn *);
int DtlsOssl_handshake(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_receive(DtlsOssl_conn *, DtlsOssl_scratch *, const char *, size_t);
int DtlsOssl_install_fast(const char *);
void DtlsOssl_scratch_claim(DtlsOssl_scratch *);
void DtlsOssl_bind_scratch(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_handle_timeout(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_shutdown(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_drain(DtlsOssl_conn *, DtlsOssl_scratch *);
int DtlsOssl_prime_cookie_exchange(DtlsOssl_conn *);
size_t DtlsOssl_pending(DtlsOssl_conn *);
int DtlsOssl_well_formed(const unsigned char *, size_t);
void DtlsOssl_set_renumber0(DtlsOssl_conn *, int);
int DtlsOssl_release_memory(void);

/* Called from engine.c (the key-log callback), so not static: "Python+C". */
extern "Python+C" int DtlsOssl_py_keylog(void *, const char *);
"""

# One translation unit: cffi's wrappers call the DtlsOssl_ functions directly, and the compiler
# may inline across the files (as when they were one string). DTLSOSSL_ONE_TU makes the names
# the files share among themselves static (dtls_ossl.h: DTLSOSSL_SHARED).
SOURCE = '#define DTLSOSSL_ONE_TU 1\n#include "dtls_ossl.h"\n' + "".join(
    f'#include "{name}"\n' for name in C_FILES if name.endswith(".c")
)

_HINT = (
    "dtls_ossl needs the OpenSSL development headers (openssl/ssl.h): install libssl-dev on "
    "Debian/Ubuntu, openssl-devel on Fedora/RHEL, or point CFLAGS/LDFLAGS at an OpenSSL >= 3.0"
)


def _pkg_config() -> tuple[list[str], list[str], list[str]]:
    """Return (include_dirs, library_dirs, extra_link_args) from pkg-config, or empty lists."""
    exe = shutil.which("pkg-config")
    if exe is None:
        return [], [], []
    try:
        cflags = subprocess.run(
            [exe, "--cflags-only-I", "libssl", "libcrypto"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        libs = subprocess.run(
            [exe, "--libs-only-L", "libssl", "libcrypto"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except subprocess.CalledProcessError:
        return [], [], []
    return [f[2:] for f in cflags], [f[2:] for f in libs], []


def _check_headers(include_dirs: list[str]) -> None:
    """Stop with one clear line when openssl/ssl.h cannot be found anywhere we would look."""
    candidates = [*include_dirs, "/usr/include", "/usr/local/include"]
    for flag in os.environ.get("CFLAGS", "").split() + os.environ.get("CPPFLAGS", "").split():
        if flag.startswith("-I"):
            candidates.append(flag[2:])
    if os.environ.get("CPATH"):
        candidates.extend(os.environ["CPATH"].split(os.pathsep))
    if not any((Path(d) / "openssl" / "ssl.h").is_file() for d in candidates):
        sys.stderr.write(f"error: {_HINT}\n")
        raise SystemExit(1)


def _check_version(include_dirs: list[str]) -> None:
    """Stop with one line when the headers the compiler finds are older than OpenSSL 3.0."""
    import sysconfig

    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    flags = os.environ.get("CPPFLAGS", "").split() + os.environ.get("CFLAGS", "").split()
    probe = (
        "#include <openssl/opensslv.h>\n#if OPENSSL_VERSION_NUMBER < 0x30000000L\n"
        "DTLS_OSSL_TOO_OLD OPENSSL_VERSION_TEXT\n#endif\n"
    )
    try:
        out = subprocess.run(
            [*cc, *flags, *(f"-I{d}" for d in include_dirs), "-E", "-P", "-"],
            input=probe,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return  # no usable preprocessor here: the compile itself will report the problem
    if "DTLS_OSSL_TOO_OLD" in out:
        found = out.split("DTLS_OSSL_TOO_OLD", 1)[1].split("\n", 1)[0].strip().strip('"')
        sys.stderr.write(
            f"error: dtls_ossl needs OpenSSL >= 3.0, but the headers found are {found}: install "
            "libssl-dev (Debian/Ubuntu) or openssl-devel (Fedora/RHEL) of OpenSSL 3, or point "
            "CFLAGS/LDFLAGS at an OpenSSL >= 3.0\n"
        )
        raise SystemExit(1)


def _make_builder() -> FFI:
    include_dirs, library_dirs, extra_link_args = _pkg_config()
    _check_headers(include_dirs)
    _check_version(include_dirs)
    werror = ["-Werror"] if os.environ.get("DTLS_OSSL_WERROR") == "1" else []
    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "dtls_ossl._openssl",
        SOURCE,
        libraries=["ssl", "crypto"],
        include_dirs=[str(SRC), *include_dirs],
        library_dirs=library_dirs,
        extra_link_args=extra_link_args,
        extra_compile_args=[*COMPILE_ARGS, *werror],
        depends=[str(SRC / name) for name in C_FILES],
        # The fast paths use the full CPython API (METH_FASTCALL, buffers, tp_alloc), so the
        # module is built for this interpreter, not for the stable ABI (abi3); cffi's generated
        # C defines Py_LIMITED_API unless told not to.
        py_limited_api=False,
        define_macros=[("_CFFI_NO_LIMITED_API", None)],
    )
    return builder


ffibuilder = _make_builder()

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(Path(__file__).resolve().parent), verbose=True)
