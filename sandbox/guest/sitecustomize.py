# Runs inside the sandbox at interpreter start-up (found through PYTHONPATH=/opt/crucible).
#
# Under gVisor a write() of more than 64 KiB to a pipe returns a short count, and with `python -u`
# the text layer drops whatever was not written. Replace stdout/stderr with unbuffered writers that
# loop until every byte is written, so output stays live AND complete.
import io
import os
import sys


class _WriteAll(io.RawIOBase):
    def __init__(self, fd):
        self._fd = fd

    def writable(self):
        return True

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def write(self, data):
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        return done


def _install():
    for fd, name in ((1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        if old is None:
            continue
        setattr(
            sys,
            name,
            io.TextIOWrapper(
                _WriteAll(fd),
                encoding=old.encoding,
                errors=old.errors,
                line_buffering=False,
                write_through=True,
            ),
        )


_install()
del _install
