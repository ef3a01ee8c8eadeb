#!/usr/bin/env python3
"""A minimal attestation agent, standard library only: the prompt cycle of
Documentation/security/IMA-export-delete.rst through an IMA securityfs
directory (real or `imasim mount`).

    usage: agent.py DIR LOG IMASIM

Each cycle opens binary_runtime_measurements_staged read-write (retrying
while EBUSY), writes A (ENOENT: nothing to stage; EEXIST: take what is
staged), reads to EOF, appends the records to LOG and fsyncs it, writes D
and closes. It cycles until `IMASIM ctl DIR status` says the workload is
done, then runs one last cycle, and prints the cycles and bytes saved.
"""
import errno
import os
import subprocess
import sys
import time


def open_writer(path):
    for _ in range(200):
        try:
            return os.open(path, os.O_RDWR)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    raise TimeoutError("still EBUSY: " + path)


def cycle(d, log):
    fd = open_writer(os.path.join(d, "binary_runtime_measurements_staged"))
    try:
        try:
            os.write(fd, b"A\n")
        except OSError as e:
            if e.errno == errno.ENOENT:
                return 0
            if e.errno != errno.EEXIST:
                raise
        data = bytearray()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        if not data:
            return 0
        with open(log, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.write(fd, b"D\n")
        return len(data)
    finally:
        os.close(fd)


def workload_done(d, imasim):
    out = subprocess.run([imasim, "ctl", d, "status"], check=True,
                         capture_output=True, text=True).stdout
    return "workload: done" in out


def main():
    d, log, imasim = sys.argv[1:4]
    cycles = saved = 0
    while not workload_done(d, imasim):
        n = cycle(d, log)
        cycles += n > 0
        saved += n
        time.sleep(0.05)
    n = cycle(d, log)
    cycles += n > 0
    saved += n
    print("agent: %d cycles saved %d bytes" % (cycles, saved))


if __name__ == "__main__":
    main()
