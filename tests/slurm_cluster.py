"""A throwaway single-node Slurm cluster for tests: Debian's packages, this host only (127.0.0.1).

Everything the daemons write (state, logs, the job-completion log, MUNGE's key and socket) lives
in folders of its own; the daemons run in the foreground as children of the test, on free ports,
and are stopped by pid. The one file outside is /etc/slurm/slurm.conf, a link to the test's
configuration while the cluster runs: Slurm commands inside a job (the plugin's `srun`) find
their configuration only there, as the plugin drops SLURM_CONF from their environment. A
slurm.conf that is not such a link (a real cluster's) is never touched: the test is skipped. Set-up facts for a container: NodeName is
`hostname -s`; no cgroups (proctrack/linuxproc, task/none); no accounting database
(accounting_storage/none), finished jobs recorded by jobcomp/filetxt; consumable cores and memory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel")
# Slurm's default; the profile's squeue status checks need it (see profiles/slurm/config.yaml).
MIN_JOB_AGE = 300
DEFAULT_CONFIG = Path("/etc/slurm/slurm.conf")
MARKER = "# Written by tests/slurm_cluster.py"


def _link_owner(path: Path) -> int | None:
    """For a link this module made: the pid of the process whose cluster it serves, 0 if that
    process is gone (a killed run: the link may be replaced). None for anything else."""
    if not path.is_symlink():
        return None
    target = Path(os.readlink(path))
    if not target.exists():
        return 0
    if not target.read_text().startswith(MARKER):
        return None
    try:
        owner = int((target.parent / "owner.pid").read_text())
    except (OSError, ValueError):
        return 0
    return owner if Path(f"/proc/{owner}").exists() else 0


def unavailable_reason() -> str | None:
    """Why a test cluster cannot run here (skip with it), or None; installs Slurm if missing."""
    if os.geteuid() != 0:
        return "a Slurm test cluster needs root (munged runs as user munge, slurmd as root)"
    owner = _link_owner(DEFAULT_CONFIG)
    if owner:
        return f"another test's Slurm cluster is running (process {owner}, {DEFAULT_CONFIG})"
    if owner is None and (DEFAULT_CONFIG.exists() or DEFAULT_CONFIG.is_symlink()):
        return f"{DEFAULT_CONFIG} exists: this machine belongs to a real Slurm cluster"
    return ensure_installed()


def _missing_programs() -> list[str]:
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    return [name for name in PROGRAMS if shutil.which(name, path=path) is None]


def ensure_installed() -> str | None:
    """Install the Debian packages if a program is missing. Returns why not, or None when ready."""
    if not _missing_programs():
        return None
    if os.geteuid() != 0:
        return f"Slurm is not installed and installing {' '.join(PACKAGES)} needs root"
    if shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Another apt-get may hold the lock (CI installs Chromium the same way): wait for it.
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    for command in (
        ["apt-get", *lock, "update", "-qq"],
        ["apt-get", *lock, "install", "-y", "-qq", *PACKAGES],
    ):
        result = subprocess.run(
            command, capture_output=True, text=True, env=environment, timeout=900
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            return f"`{' '.join(command)}` failed: {' / '.join(tail)}"
    missing = _missing_programs()
    return f"installed {' '.join(PACKAGES)} but still missing {missing}" if missing else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _program(name: str) -> str:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or name


def _node_line(host: str) -> str:
    """This machine's node definition as slurmd itself detects it (CPUs, sockets, memory)."""
    detected = subprocess.run(
        [_program("slurmd"), "-C"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()[0]
    words = [word for word in detected.split() if not word.startswith("NodeName=")]
    return f"NodeName={host} NodeAddr=127.0.0.1 {' '.join(words)} State=UNKNOWN"


@dataclass
class Cluster:
    """A running cluster; Slurm commands and Snakemake find it through /etc/slurm/slurm.conf."""

    directory: Path
    munge_directory: Path
    config: Path
    jobcomp_log: Path
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def run(self, *command: str, timeout: int = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_program(command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.run("sinfo", "--noheader", "--Node", "--format=%T").stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"node not idle after {timeout} s (sinfo: {state!r})\n{self.logs()}")

    def _check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in sorted(self.directory.glob("*.log")) + sorted(self.directory.glob("*.out")):
            if path.is_file():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job, then stop the daemons this object started, newest first, by pid."""
        if any(process.poll() is None for name, process in self.processes if name == "slurmctld"):
            self.run("scancel", "--full", f"--user={pwd.getpwuid(os.getuid()).pw_name}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                jobs = self.run("squeue", "--noheader", "--states=RUNNING,COMPLETING,PENDING")
                if jobs.returncode != 0 or not jobs.stdout.strip():
                    break
                time.sleep(0.5)
        for _, process in reversed(self.processes):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout=15)
        self.processes.clear()
        shutil.rmtree(self.munge_directory, ignore_errors=True)
        if DEFAULT_CONFIG.is_symlink() and DEFAULT_CONFIG.resolve() == self.config.resolve():
            DEFAULT_CONFIG.unlink()


def start_cluster(directory: Path) -> Cluster:
    """Configure and start munged, slurmctld and slurmd; return once the node is idle.

    The caller must call ``stop()`` (also when this raises: the cluster is stopped here then).
    """
    directory.mkdir(parents=True, exist_ok=True)
    # munged refuses folders it does not own or cannot reach: its own, outside the test's tmp.
    munge_directory = Path(tempfile.mkdtemp(prefix="cnnbench-munge-"))
    munge = pwd.getpwnam("munge")
    os.chown(munge_directory, munge.pw_uid, munge.pw_gid)
    munge_directory.chmod(0o755)  # clients must reach the socket inside
    munge_socket = munge_directory / "munge.socket"
    host = socket.gethostname().split(".")[0]
    config = directory / "slurm.conf"
    jobcomp_log = directory / "jobcomp.txt"
    for folder in ("state", "spool"):
        (directory / folder).mkdir(exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    config.write_text(
        f"""{MARKER}: one node, this host only.
ClusterName=cnnbench
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={directory / "state"}
SlurmdSpoolDir={directory / "spool"}
SlurmctldPidFile={directory / "slurmctld.pid"}
SlurmdPidFile={directory / "slurmd.pid"}
SlurmctldLogFile={directory / "slurmctld.log"}
SlurmdLogFile={directory / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={jobcomp_log}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge={MIN_JOB_AGE}
{_node_line(host)}
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    cluster = Cluster(directory, munge_directory, config, jobcomp_log)
    try:
        (directory / "owner.pid").write_text(str(os.getpid()))
        if _link_owner(DEFAULT_CONFIG) == 0:
            DEFAULT_CONFIG.unlink()
        DEFAULT_CONFIG.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONFIG.symlink_to(config)
        as_munge = {"user": munge.pw_uid, "group": munge.pw_gid, "extra_groups": []}
        key = munge_directory / "munge.key"
        subprocess.run(
            [_program("mungekey"), "--create", f"--keyfile={key}"],
            check=True,
            capture_output=True,
            timeout=60,
            **as_munge,
        )
        daemons = [
            (
                "munged",
                [
                    "munged",
                    "--foreground",
                    f"--socket={munge_socket}",
                    f"--key-file={key}",
                    f"--pid-file={munge_directory / 'munged.pid'}",
                    f"--log-file={munge_directory / 'munged.log'}",
                    f"--seed-file={munge_directory / 'munged.seed'}",
                ],
                as_munge,
            ),
            ("slurmctld", ["slurmctld", "-D", "-i", "-f", str(config)], {}),
            ("slurmd", ["slurmd", "-D", "-f", str(config)], {}),
        ]
        for name, command, options in daemons:
            with open(directory / f"{name}.out", "wb") as output:
                process = subprocess.Popen(
                    [_program(command[0]), *command[1:]],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **options,
                )
            cluster.processes.append((name, process))
            if name == "munged":
                _wait_for(munge_socket.exists, 30, cluster, "munged's socket")
            if name == "slurmctld":
                _wait_for(lambda: cluster.run("squeue").returncode == 0, 60, cluster, "slurmctld")
        cluster.wait_idle()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for(ready, timeout: float, cluster: Cluster, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster._check_alive()
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout} s\n{cluster.logs()}")


def read_jobcomp(path: Path) -> list[dict[str, str]]:
    """The job-completion log (jobcomp/filetxt): one record per finished job, `Key=value` words."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            records.append(dict(word.split("=", 1) for word in line.split() if "=" in word))
    return records
