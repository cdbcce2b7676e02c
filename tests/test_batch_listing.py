"""What a batch separates: manifests (text, CSV, playlists), folders and files as `separate` lists them,
and URIs, listed and downloaded from a real S3-compatible server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from conftest import synth_mixture
from test_robustness import _env

from cunet.batch.listing import (
    BatchInput,
    fetch_remote,
    is_uri,
    list_inputs,
    list_remote,
    read_manifest,
)
from cunet.errors import AudioError, UserError

RATE = 44100
ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, seconds: float = 0.3, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth_mixture(seconds, seed=seed), RATE)
    return path


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with bucket 'music': cat/{a.wav, notes.txt, live/b.flac,
    .hidden/c.wav}, docs/readme.txt; yields the environment that points boto at it (also set in this process)."""
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    client = boto3.client("s3")
    client.create_bucket(Bucket="music")
    for key, seed in (("cat/a.wav", 0), ("cat/live/b.flac", 1), ("cat/.hidden/c.wav", 2)):
        local = Path(os.environ.get("TMPDIR", "/tmp")) / f"cunet-s3-{os.getpid()}{Path(key).suffix}"
        write(local, 0.5, seed)
        client.upload_file(str(local), "music", key)
        local.unlink()
    client.put_object(Bucket="music", Key="cat/notes.txt", Body=b"liner notes")
    client.put_object(Bucket="music", Key="docs/readme.txt", Body=b"no audio here")
    yield env
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_uris() -> None:
    assert is_uri("s3://bucket/key") and is_uri("gs://b/k") and is_uri("memory://x")
    assert not is_uri("file:///x.wav") and not is_uri("/x.wav") and not is_uri("a:b.wav")


def test_a_text_manifest_is_relative_to_itself_and_names_like_a_folder(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    write(root / "a.wav")
    write(root / "disc 1" / "b.flac")
    write(tmp_path / "elsewhere" / "c.wav")
    write(root / "folder" / "d.wav")
    manifest = root / "list.m3u"
    manifest.write_text(
        "#EXTM3U\n# a comment\n\na.wav\ndisc 1/b.flac\n"
        f"{tmp_path / 'elsewhere' / 'c.wav'}\n../elsewhere/c.wav\nfolder\n"
    )
    assert read_manifest(str(manifest)) == [
        (str(root / "a.wav"), ""),
        (str(root / "disc 1" / "b.flac"), "disc 1"),
        (str(tmp_path / "elsewhere" / "c.wav"), None),
        (str(root / "../elsewhere/c.wav"), None),
        (str(root / "folder"), None),
    ]
    songs = list_inputs([], [str(manifest)])
    assert songs == [  # the same file twice is kept once; a folder is scanned like one given
        BatchInput(str(root / "a.wav"), "a", ""),
        BatchInput(str(root / "disc 1" / "b.flac"), "b", "disc 1"),
        BatchInput(str(tmp_path / "elsewhere" / "c.wav"), "c", ""),
        BatchInput(str(root / "folder" / "d.wav"), "d", ""),
    ]


def test_a_csv_manifest_takes_its_path_column(tmp_path: Path) -> None:
    write(tmp_path / "x.wav")
    (tmp_path / "m.csv").write_text('id,path,note\n1,x.wav,"a, b"\n2,,empty\n')
    assert read_manifest(str(tmp_path / "m.csv")) == [(str(tmp_path / "x.wav"), "")]
    (tmp_path / "f.csv").write_text(f"input,error\n{tmp_path / 'x.wav'},bad\n")  # a failures file
    assert read_manifest(str(tmp_path / "f.csv")) == [(str(tmp_path / "x.wav"), None)]
    (tmp_path / "n.csv").write_text("song\nx.wav\n")  # no known column: the first one
    assert read_manifest(str(tmp_path / "n.csv")) == [(str(tmp_path / "x.wav"), "")]


def test_bad_manifests_and_inputs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="manifest '.*nope.txt': cannot read it"):
        read_manifest(str(tmp_path / "nope.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(UserError, match="not a text or CSV file of paths"):
        read_manifest(str(tmp_path / "bin.txt"))
    (tmp_path / "empty").mkdir()
    failed: list[tuple[str, str]] = []
    write(tmp_path / "ok.wav")
    songs = list_inputs(
        [str(tmp_path / "empty"), str(tmp_path / "ok.wav")],
        error=lambda arg, exc: failed.append((arg, str(exc))),
    )
    assert songs == [BatchInput(str(tmp_path / "ok.wav"), "ok", "")]
    assert failed == [(str(tmp_path / "empty"), f"{tmp_path / 'empty'}: no audio files in this "
                       "folder (-r looks in subfolders too)")]  # fmt: skip


def test_s3_prefixes_are_listed_like_folders(s3) -> None:
    notes: list[str] = []
    assert list_remote("s3://music/cat/", True, notes.append) == [
        BatchInput("s3://music/cat/a.wav", "a", ""),
        BatchInput("s3://music/cat/live/b.flac", "b", "live"),
    ]
    assert notes == ["s3://music/cat/notes.txt: skipped (not an audio file)"]
    notes.clear()
    assert list_remote("s3://music/cat", False, notes.append) == [
        BatchInput("s3://music/cat/a.wav", "a", "")
    ]
    assert "s3://music/cat/live: skipped (a folder; -r lists subfolders too)" in notes
    assert list_remote("s3://music/cat/live/b.flac", False) == [
        BatchInput("s3://music/cat/live/b.flac", "b", "")
    ]
    with pytest.raises(AudioError, match="^s3://nobucket/x: no such file or folder$"):
        list_remote("s3://nobucket/x", True)
    assert list_remote("s3://music/cat/.hidden/", True) == [  # given, a hidden folder is listed
        BatchInput("s3://music/cat/.hidden/c.wav", "c", "")
    ]
    with pytest.raises(AudioError, match=r"^s3://music/docs/: no audio files there \(-r looks"):
        list_remote("s3://music/docs/", False)


def test_s3_downloads_are_atomic_and_errors_one_line(s3, tmp_path: Path) -> None:
    target = fetch_remote("s3://music/cat/a.wav", tmp_path / "in" / "a.wav")
    assert sf.info(str(target)).frames == int(0.5 * RATE)
    with pytest.raises(AudioError, match=r"s3://music/cat/zz.wav: cannot download it \("):
        fetch_remote("s3://music/cat/zz.wav", tmp_path / "in" / "zz.wav")
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.wav"]  # no partial left


def test_a_batch_of_s3_inputs_matches_separate_of_the_same_files(
    s3, tiny_tflite_path: Path, tmp_path: Path
) -> None:
    """The whole command on its own embedded Ray: workers download the songs from the S3 server."""
    local = tmp_path / "local"
    for key in ("a.wav", "live/b.flac"):
        fetch_remote(f"s3://music/cat/{key}", local / key)
    fast = ["--chunk-seconds", "1", "--overlap-seconds", "0.25", "-i", "vocals", "-q"]
    model = ["--model", str(tiny_tflite_path)]
    env = {**_env(), **s3}
    for command, source, out in (
        ("separate", str(local), "one"),
        ("batch", "s3://music/cat/", "batch"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "cunet", command, source, "-r", "-o", str(tmp_path / out)]
            + model
            + fast,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in ("a/vocals.wav", "live/b/vocals.wav"):
        assert (tmp_path / "batch" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()
