"""Ray for a batch: the job's scratch folder and its locks, and a job on a simulated two-node cluster
(`ray.cluster_utils.Cluster`, two raylets on this machine) joined with `--ray ADDRESS`, the model
shipped to the workers through the object store."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from conftest import synth_mixture
from test_robustness import _env

from cunet.batch.cluster import Scratch
from cunet.cli import main

RATE = 44100
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--chunk-seconds", "1", "--overlap-seconds", "0.25"]


def test_scratch_of_a_dead_job_is_removed_that_of_a_live_one_kept(tmp_path: Path) -> None:
    root = tmp_path / ".cunet-batch"
    for job in ("dead", "alive"):
        (root / job / "3-1").mkdir(parents=True)
        (root / job / "3-1" / ".vocals.wav.123.ab.cunet-partial").write_bytes(b"half")
        (root / f"{job}.lock").write_bytes(b"")
    with open(root / "alive.lock", "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        scratch = Scratch(tmp_path)
        assert sorted(p.name for p in root.iterdir()) == sorted(
            ["alive", "alive.lock", scratch.job, f"{scratch.job}.lock"]
        )
        assert scratch.song(7, 2) == str(root / scratch.job / "7-2")
        scratch.close()
    assert sorted(p.name for p in root.iterdir()) == ["alive", "alive.lock"]
    Scratch(tmp_path).close()  # now that job is gone too: nothing is left
    assert not root.exists()


def test_an_address_where_no_cluster_listens_is_one_line_at_once(tmp_path: Path, capsys) -> None:
    sf.write(tmp_path / "song.wav", synth_mixture(0.2), RATE)
    out = tmp_path / "out"
    assert main(["batch", str(tmp_path / "song.wav"), "-o", str(out), "--ray", "127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: cannot join the Ray cluster at '127.0.0.1:1': Connection refused (is `ray start` "
        "running there? use auto on a node of the cluster, or ray://HOST:10001)"
    ]
    assert not out.exists()


def test_a_two_node_cluster_separates_as_separate_does(
    tiny_tflite_path: Path, tmp_path: Path
) -> None:
    from ray.cluster_utils import Cluster

    music = tmp_path / "music"
    music.mkdir()
    for i in range(6):
        sf.write(music / f"song{i}.wav", synth_mixture(8.0, seed=i), RATE)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        args = [str(music), "-i", "vocals,bass", "--model", str(tiny_tflite_path), *FAST, "-q"]
        proc = subprocess.run(
            [sys.executable, "-m", "cunet", "batch", *args, "-o", str(tmp_path / "batch")]
            + ["--ray", cluster.address],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        cluster.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(["separate", *args, "-o", str(tmp_path / "one")]) == 0
    report = [json.loads(x) for x in (tmp_path / "batch" / "batch-report.jsonl").open()]
    assert [r["status"] for r in report] == ["ok"] * 6
    nodes = {r["worker"].rpartition("@")[2] for r in report}
    assert len(nodes) == 2, report  # one worker on each node
    for i in range(6):
        for stem in ("vocals", "bass"):
            rel = Path(f"song{i}") / f"{stem}.wav"
            assert (tmp_path / "batch" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()
