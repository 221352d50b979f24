"""A repaired wheel runs on the OpenSSL it carries, also after Python's ssl loaded the system one.

auditwheel copies libssl/libcrypto into ``dtls_ossl.libs/`` under hashed names and points the
module at them. These tests run where dtls_ossl was installed from such a wheel
(ci/wheel-check.sh) and skip elsewhere (a build from source links the system OpenSSL).
Each check runs in a fresh interpreter that imports ``ssl`` before ``dtls_ossl``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import dtls_ossl

pytestmark = pytest.mark.timeout(60)

BUNDLE = Path(dtls_ossl.__file__).resolve().parent.parent / "dtls_ossl.libs"

needs_wheel = pytest.mark.skipif(
    not BUNDLE.is_dir(), reason="dtls_ossl is not installed from a repaired wheel"
)

# Which file defines a symbol as the dynamic linker resolves it for the module: dlsym on the
# module's handle searches the module, then its own dependencies (the local scope; the module
# itself exports nothing but PyInit__openssl), and dladdr names the file the address is in.
# dlsym on the default handle answers for the global scope, which would win over the local one.
PROBE = r"""
import ctypes, json, os, ssl
import dtls_ossl, dtls_ossl._openssl
from dtls_ossl._binding import openssl_build_version_number

class DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]

libc = ctypes.CDLL(None)
libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]

def where(handle, name):
    address = ctypes.cast(getattr(handle, name), ctypes.c_void_p).value
    info = DlInfo()
    assert libc.dladdr(address, ctypes.byref(info))
    return os.path.realpath(info.fname.decode())

def loaded(path):
    return ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)

module = loaded(dtls_ossl._openssl.__file__)
libcrypto = where(module, "OpenSSL_version")
bundled = loaded(libcrypto)
bundled.OpenSSL_version.restype = ctypes.c_char_p
bundled.OpenSSL_version_num.restype = ctypes.c_ulong
maps = open("/proc/self/maps").read().split()
print(json.dumps({
    "ssl_module": ssl.OPENSSL_VERSION,
    "ssl_module_file": where(loaded(ssl._ssl.__file__), "SSL_new"),
    "libssl": where(module, "SSL_CTX_new"),
    "libcrypto": libcrypto,
    "global_scope_has_openssl": hasattr(libc, "OpenSSL_version"),
    "openssl_version": dtls_ossl.openssl_version(),
    "openssl_version_number": dtls_ossl.openssl_version_number(),
    "built": openssl_build_version_number(),
    "bundled_version": bundled.OpenSSL_version(0).decode(),
    "bundled_version_number": bundled.OpenSSL_version_num(),
    "mapped": sorted({os.path.realpath(p) for p in maps if "/lib" in p and ".so" in p}),
}))
"""


def probe() -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0 and "No module named '_ssl'" in result.stderr:
        pytest.skip("this Python has no ssl module to load a second OpenSSL")
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


@needs_wheel
def test_bundle_holds_renamed_libssl_and_libcrypto() -> None:
    names = sorted(p.name for p in BUNDLE.iterdir())
    assert [n.split("-", 1)[0] for n in names if n.startswith(("libssl-", "libcrypto-"))] == [
        "libcrypto",
        "libssl",
    ], names
    # Renamed: a hash between the name and ".so", so no system soname can match them.
    assert all(".so" in n and n.split("-", 1)[1].split(".so")[0] for n in names), names


@needs_wheel
def test_import_ssl_first_keeps_the_bundled_openssl() -> None:
    found = probe()
    bundle = str(BUNDLE.resolve())
    # dtls_ossl resolves OpenSSL into its own bundle, not into what ssl loaded.
    assert str(found["libssl"]).startswith(bundle + "/libssl-"), found
    assert str(found["libcrypto"]).startswith(bundle + "/libcrypto-"), found
    assert not str(found["ssl_module_file"]).startswith(bundle), found
    assert found["global_scope_has_openssl"] is False, found
    # Both OpenSSLs are in the process at once: the system one for ssl, the bundled one for us.
    mapped = [str(p) for p in found["mapped"]]  # type: ignore[attr-defined]
    assert found["ssl_module_file"] in mapped and found["libssl"] in mapped, mapped
    # The version dtls_ossl reports and checks is the bundled library's, the one it was built with.
    assert found["openssl_version"] == found["bundled_version"], found
    assert found["openssl_version_number"] == found["bundled_version_number"] == found["built"]


@needs_wheel
def test_cli_version_names_the_bundled_openssl() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dtls_ossl", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=BUNDLE,
    ).stdout
    assert f"running {dtls_ossl.openssl_version()}" in out, out
