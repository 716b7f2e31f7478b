"""A real single-node SLURM cluster on this machine, for the profile test.

Debian's SLURM + munge packages (installed when missing, needs root and the Debian archive),
one node with 2 CPUs and one GRES `gpu` (File=/dev/null: jobs can request --gpus=1 on a
machine without GPUs) in two partitions, `cpu` (the default) and `gpu`, as on a real cluster, no accounting (job states come from squeue; finished jobs stay visible
for an hour, MinJobAge). The daemons are started in the foreground as children of this process
and stopped by exactly those PIDs. slurm.conf must live at /etc/slurm/slurm.conf (the jobstep
executor strips SLURM_CONF from its inner srun); an existing file there is restored on stop.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/sbatch", "/usr/bin/squeue"]
CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
CPU_PARTITION, GPU_PARTITION = "cpu", "gpu"


class SlurmUnavailable(RuntimeError):
    pass


def install() -> None:
    """Install Debian's SLURM and munge packages if any binary is missing."""
    if all(Path(b).exists() for b in BINARIES):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("SLURM is not installed and installing it needs root (apt-get install " + " ".join(PACKAGES) + ")")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SlurmUnavailable(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr[-2000:]}")
    missing = [b for b in BINARIES if not Path(b).exists()]
    if missing:
        raise SlurmUnavailable(f"installed {PACKAGES} but {missing} are still missing")


class LocalSlurm:
    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self._saved: dict[Path, bytes | None] = {}

    def _write_conf(self, path: Path, text: str) -> None:
        self._saved.setdefault(path, path.read_bytes() if path.exists() else None)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def start(self, timeout: float = 60) -> None:
        s = self.scratch
        for d in ("state", "spool", "log"):
            (s / d).mkdir(parents=True, exist_ok=True)
        self._write_conf(
            CONF,
            f"""ClusterName=weightspace-test
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation={s}/state
SlurmdSpoolDir={s}/spool
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
# The node claims more memory than the machine has, so that retries with growing memory
# (attempt x mem_mb) stay schedulable; the jobs themselves use far less.
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=64000 Gres=gpu:1 State=UNKNOWN
PartitionName={CPU_PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName={GPU_PARTITION} Nodes=ALL MaxTime=INFINITE State=UP
""",
        )
        self._write_conf(GRES, f"NodeName={self.host} Name=gpu Count=1 File=/dev/null\n")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create"], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o600)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        logs = s / "log"
        self.procs["munged"] = subprocess.Popen(
            ["/usr/sbin/munged", "-F", "--force"], user="munge", group="munge", stdout=open(logs / "munged.out", "w"), stderr=subprocess.STDOUT
        )
        self._wait(lambda: subprocess.run(["munge", "-n"], capture_output=True).returncode == 0, timeout, "munged")
        self.procs["slurmctld"] = subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-i"], stdout=open(logs / "slurmctld.out", "w"), stderr=subprocess.STDOUT)
        self._wait(lambda: subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count("UP") > 0, timeout, "slurmctld")
        self.procs["slurmd"] = subprocess.Popen(["/usr/sbin/slurmd", "-D"], stdout=open(logs / "slurmd.out", "w"), stderr=subprocess.STDOUT)
        self._wait(self._node_idle, timeout, "slurmd (node idle)")

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.split()
        return out == ["idle"]

    def _wait(self, ok, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise SlurmUnavailable(f"{name} exited with {p.returncode}; logs in {self.scratch / 'log'}")
            if ok():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"{what} did not come up within {timeout} s; logs in {self.scratch / 'log'}")

    def jobs(self) -> list[dict[str, str]]:
        """Every job SLURM still knows (finished ones included): id, name, state, comment, memory,
        partition and GPU request (`gres`: the job's TresPerJob, e.g. gres:gpu:1; empty for none)."""
        out = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%j|%T|%k|%m|%P"], capture_output=True, text=True, check=True).stdout
        keys = ("id", "name", "state", "comment", "memory", "partition")
        jobs = [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]
        shown = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True).stdout
        tres = {}
        for line in shown.splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if "JobId" in fields:
                tres[fields["JobId"]] = fields.get("TresPerJob", "")
        return [{**j, "gres": tres.get(j["id"], "")} for j in jobs]

    def stop(self) -> list[int]:
        """Stop exactly the daemons this object started (slurmd, slurmctld, munged); restore configs."""
        stopped = []
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None:
                continue
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            stopped.append(p.pid)
        for path, data in self._saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        return stopped
