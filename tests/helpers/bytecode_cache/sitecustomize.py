"""Compiled code of modules' zipped Python, kept between runs: test-only, on PYTHONPATH in the tests' runs.

Every Ansible module task runs its code from a zip (AnsiballZ), and Python's zipimport never caches
bytecode, so each task compiled ansible.module_utils and ours again: about 0.12 s of CPU per task here,
a tenth of the test command (docs/benchmarks.md, "The test command's time"). When
SAFESHIP_TEST_BYTECODE_CACHE names a directory, zipimport's compile step looks the source up there first,
keyed by its SHA-256 and the interpreter's bytecode magic, so only code compiled from the very same
source is reused; a miss compiles as before and stores the result (written to a temporary name and
renamed: concurrent tasks never read half a file). Anything that goes wrong falls back to compiling.

helpers.playbooks.ansible_variables() puts this directory on PYTHONPATH; Python imports sitecustomize
at startup, so it reaches the module processes of local connections (not become's, whose environment
is reset, nor the lab's hosts). Nothing else changes: the same source runs."""

import os
import zipimport


def _install(cache_dir):
    import marshal
    import types
    from importlib.util import MAGIC_NUMBER

    try:
        from _sha256 import sha256  # the builtin: hashlib's OpenSSL import costs 4 ms per process
    except ImportError:
        from hashlib import sha256

    compile_source = zipimport._compile_source

    def renamed(code, filename):
        """code as if compiled from filename (the cached one names the zip of the run that compiled it)."""
        consts = tuple(renamed(const, filename) if isinstance(const, types.CodeType) else const
                       for const in code.co_consts)
        return code.replace(co_filename=filename, co_consts=consts)

    def cached_compile_source(pathname, source):
        digest = sha256(MAGIC_NUMBER + source).hexdigest()
        path = os.path.join(cache_dir, digest[:2], digest)
        try:
            with open(path, "rb") as handle:
                code = marshal.loads(handle.read())  # marshal.load(handle) reads it a few bytes at a time
            return code if code.co_filename == pathname else renamed(code, pathname)
        except (OSError, EOFError, ValueError, TypeError, AttributeError):
            pass
        code = compile_source(pathname, source)
        temporary = "%s.%d.tmp" % (path, os.getpid())
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(marshal.dumps(code))
            os.replace(temporary, path)
        except OSError:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        return code

    zipimport._compile_source = cached_compile_source


if os.environ.get("SAFESHIP_TEST_BYTECODE_CACHE") and hasattr(zipimport, "_compile_source"):
    _install(os.environ["SAFESHIP_TEST_BYTECODE_CACHE"])
