"""Starting torchrun for the tests: one node, N CPU ranks, with every address pinned to the
loopback interface, so that neither the rendezvous nor gloo ever looks up the machine's host
name (where it does not resolve, an unpinned torchrun waits out its timeouts: minutes).

- `--rdzv-endpoint 127.0.0.1:0` with the c10d backend: the rendezvous store on a free loopback
  port (what `--standalone` does with "localhost").
- `--local-addr 127.0.0.1`: the address rank 0 publishes as MASTER_ADDR (otherwise
  socket.getfqdn()).
- GLOO_SOCKET_IFNAME=lo: the interface gloo binds (otherwise the one the host name resolves to).
- timeouts of seconds, not torch's 15 minutes: a rendezvous that cannot happen fails fast.

torch.distributed.run's options are documented at https://pytorch.org/docs/stable/elastic/run.html.
"""
import os
import signal
import socket
import subprocess
import sys
import uuid

LOOPBACK = "127.0.0.1"
RENDEZVOUS_TIMEOUT_S = 30  # join and last-call timeouts of the rendezvous, and gloo's own
RUN_TIMEOUT_S = 240        # the whole run: a tiny checkpoint loads in well under a second


class LaunchError(AssertionError):
    """torchrun could not start, or ran out of time; the message says which and why."""


def loopback_problem():
    """None when a TCP socket can listen on 127.0.0.1, else why not."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            s.listen(1)
    except OSError as e:
        return "cannot listen on %s (%s): torchrun's rendezvous needs the loopback interface" % (LOOPBACK, e)
    return None


def command(nproc, script, *args, nnodes=1, join_timeout=RENDEZVOUS_TIMEOUT_S):
    return [sys.executable, "-m", "torch.distributed.run",
            "--nnodes", str(nnodes), "--nproc-per-node", str(nproc),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", LOOPBACK + ":0",
            "--rdzv-id", uuid.uuid4().hex, "--local-addr", LOOPBACK,
            "--rdzv-conf", "join_timeout=%d,last_call_timeout=1" % join_timeout,
            "--max-restarts", "0", "--redirects", "3", "--tee", "3",
            script, *args]


def environment(extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR=LOOPBACK, GLOO_SOCKET_IFNAME="lo",
               TP_SOCKET_IFNAME="lo", UMLOAD_RENDEZVOUS_TIMEOUT_S=str(RENDEZVOUS_TIMEOUT_S))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def run(nproc, script, *args, prefix=(), env=None, timeout=RUN_TIMEOUT_S, **options):
    """Runs `prefix + torchrun ... script args` (options: nnodes, join_timeout); returns the
    CompletedProcess (stdout and stderr together). Raises LaunchError, with the output so far,
    when the loopback interface is unusable or the run outlives `timeout` (its whole process group
    is then killed)."""
    problem = loopback_problem()
    if problem:
        raise LaunchError(problem)
    proc = subprocess.Popen([*prefix, *command(nproc, script, *args, **options)], env=environment(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise LaunchError("torchrun with %d ranks did not finish within %d s (rendezvous on %s, "
                          "gloo on lo); its output:\n%s" % (nproc, timeout, LOOPBACK, out[-4000:]))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)
