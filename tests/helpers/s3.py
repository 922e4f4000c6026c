"""A local S3-API server for tests and benches: moto's server mode in its own process on
127.0.0.1 and a free port, with IAM authentication on (a wrong key is refused, as S3
refuses it), one bucket, and the environment that LanceDB reads its credentials from.

Authentication: moto skips checking the first ``INITIAL_NO_AUTH_ACTION_COUNT`` requests
and checks every later one; the three skipped ones make the IAM user, its access key and
its policy (s3:*), so from the bucket on only that key's signed requests get in.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers.served import ready_server, stop

REGION = "us-east-1"
BUCKET = "loupe"
_SETUP_ACTIONS = 3  # create_user, create_access_key, put_user_policy (unauthenticated)
_POLICY = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", '
           '"Resource": "*"}]}')


@dataclass
class S3Server:
    """A running local S3 server: where it is, its bucket and the key that gets in."""

    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    access_key: str
    secret_key: str
    proc: subprocess.Popen

    def env(self, **changes: str) -> dict[str, str]:
        """The AWS_* variables LanceDB (Lance's object_store) reads: the key, the region,
        the endpoint, and AWS_ALLOW_HTTP (a plain-http endpoint is refused without it);
        ``changes`` override them (a wrong secret, say)."""
        env = {"AWS_ACCESS_KEY_ID": self.access_key,
               "AWS_SECRET_ACCESS_KEY": self.secret_key,
               "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
               "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}
        env.update(changes)
        return env

    def uri(self, prefix: str) -> str:
        """``s3://BUCKET/prefix``."""
        return f"s3://{self.bucket}/{prefix.strip('/')}"

    def client(self):
        """A boto3 S3 client with the good key (to look at what was written)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(work: Path, bucket: str = BUCKET, timeout: float = 30) -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (a process of its own: the replicas' requests do not
    wait on the test's interpreter) with ``bucket`` made, until the block ends; its log
    goes to ``work/moto.log``."""
    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(_SETUP_ACTIONS))
    for name in list(env):
        if name.startswith("AWS_"):
            env.pop(name)  # the server needs none, and must not use a real account's
    log = open(work / "moto.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("moto did not start:\n" +
                                         (work / "moto.log").read_text()) from None
                time.sleep(0.1)
        anyone = {"endpoint_url": endpoint, "region_name": REGION,
                  "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **anyone)
        iam.create_user(UserName="loupe")
        key = iam.create_access_key(UserName="loupe")["AccessKey"]
        iam.put_user_policy(UserName="loupe", PolicyName="s3", PolicyDocument=_POLICY)
        server = S3Server(endpoint, bucket, key["AccessKeyId"], key["SecretAccessKey"], proc)
        server.client().create_bucket(Bucket=bucket)  # the first checked request
        yield server
    finally:
        stop(proc)
        log.close()


@dataclass
class Replica:
    """One `loupe serve --db FOLDER --tables-uri URI` process: its address and key."""

    folder: Path
    url: str
    key: str
    proc: subprocess.Popen
    log: Path


@contextmanager
def replicas(folders: list[Path], tables_uri: str | None, env: dict, work: Path,
             *flags: str, each: Sequence[Sequence[str]] = (), timeout: float = 180
             ) -> Iterator[list[Replica]]:
    """``loupe serve --db F --tables-uri URI --port 0 FLAGS`` for every folder ``F`` at once
    (all started before any is waited for), each ready once its server file names it and
    /api/v1/status answers its key; stopped when the block ends. Logs: ``work/replica-*``.
    ``each``: more flags, folder by folder; no ``tables_uri``: none is given."""

    procs, logs = [], []
    for i, folder in enumerate(folders):
        log = open(work / f"replica-{i}-{folder.name}.log", "w")  # noqa: SIM115
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "loupe.search.cli", "serve", "--db", str(folder),
             *(["--tables-uri", tables_uri] if tables_uri else []), "--port", "0", *flags,
             *(each[i] if each else ())], env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True))
    try:
        ready: list[Replica] = []
        deadline = time.monotonic() + timeout
        for folder, proc, log in zip(folders, procs, logs, strict=True):
            while True:
                info = ready_server(folder, proc)
                if info is not None:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("a replica did not start:\n" +
                                         Path(log.name).read_text())
                time.sleep(0.1)
            ready.append(Replica(folder, info.url, info.token, proc, Path(log.name)))
        yield ready
    finally:
        for proc in procs:
            proc.terminate()  # all at once, then each waited for
        for proc in procs:
            stop(proc)
        for log in logs:
            log.close()
