"""The SFTP half of bench/remote_bench.py, against OpenSSH's sshd (Debian's openssh-server, started on a
free high port by tests/interop_servers.py; needs root)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from remote_bench import app_for, bench_list_diff, timed
from tests.interop_servers import openssh_server

CHUNK = 1 << 20


def bench_sftp(work: Path, folder: Path, args) -> None:
    with openssh_server(work / "sshd") as sshd:
        known_hosts = work / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n")
        source = ('[[sources]]\nname = "bench"\nkind = "sftp"\nstable_listings = 1\nhost = "127.0.0.1"\n'
                  f'port = {sshd.port}\nusername = "{sshd.user}"\nprivate_key_file = "{sshd.client_key}"\n'
                  f'known_hosts = "{known_hosts}"\n'
                  f'[[sources.dirs]]\npath = "{folder}"\ncarrier = "hero"\ntype = "cdr"\n')
        app = app_for(work, source)
        try:
            bench_list_diff(app, str(folder), args.repeat)
            bench_download(app, work, sshd, known_hosts, args)
        finally:
            app.close()


def bench_download(app, work: Path, sshd, known_hosts: Path, args) -> None:
    from ingest.collectors import collector_for

    big = work / "big.bin"
    with open(big, "wb") as out:
        block = os.urandom(CHUNK)
        for _ in range(args.size_mib):
            out.write(block)
    size_mib = big.stat().st_size / 2**20
    collector = collector_for(app, app.config.source("bench"))

    def ours():
        with collector.session() as transport, transport.open(str(big)) as stream:
            total = 0
            while chunk := stream.read(CHUNK):
                total += len(chunk)
        assert total == big.stat().st_size

    def openssh():
        subprocess.run(["sftp", "-q", "-b", "-", "-i", str(sshd.client_key), "-o", f"UserKnownHostsFile={known_hosts}",
                        "-o", "StrictHostKeyChecking=yes", "-P", str(sshd.port), f"{sshd.user}@127.0.0.1"],
                       input=f"get {big} /dev/null\n", text=True, check=True, capture_output=True)

    theirs = timed(openssh, args.repeat)
    mine = timed(ours, args.repeat)
    print(f"download  : {size_mib:.0f} MiB | OpenSSH sftp {size_mib / theirs:7.1f} MiB/s | paramiko "
          f"{size_mib / mine:7.1f} MiB/s | ratio {theirs / mine:.2f}x of OpenSSH (goal >= 0.5x)")
