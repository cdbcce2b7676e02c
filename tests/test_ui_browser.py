"""The page of `cunet ui` in a real headless browser (Debian's chromium and chromedriver, through selenium).

Starts `cunet ui --port 0 --no-browser --model tiny.tflite` (the tiny test model: fast) in a subprocess, loads
the printed address and drops a short synthetic song on a throttled upload: the stems must play before the song
is even uploaded (the separation follows the upload), a seek past what is separated must wait visibly, the song
must play through with mute and solo without an underrun, and the downloads must be the files `cunet separate`
writes. Marked `browser`; it runs where chromium and chromedriver are installed (CI installs them) and is
skipped elsewhere, unless CUNET_REQUIRE_BROWSER=1 (then a missing browser fails; CI sets it). The README's
screenshot and the timings come from benchmarks/ui_latency.py, which drives the page alike.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CUNET_REQUIRE_BROWSER") == "1":
        raise RuntimeError("CUNET_REQUIRE_BROWSER=1 but chromium or chromedriver is not installed")
    pytest.skip(
        "needs chromium and chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
pytest.importorskip("selenium")
pytest.importorskip("starlette")

from conftest import synth_stems  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def start_ui(*args: str) -> tuple[subprocess.Popen, str]:
    """`cunet ui --port 0 --no-browser ARGS` in a subprocess, and the address it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cunet", "ui", "--port", "0", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+\?token=\S+)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"cunet ui printed {line!r}; stderr: {proc.stderr.read()}")
    return proc, match.group(1)


def stop_ui(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def chrome(download_dir: Path, profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(download_dir), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    return driver


def write_song(path: Path, seconds: float, rate: int = 44100) -> None:
    """A synthetic song: the sum of four distinguishable synthetic stems (vocal-like tone, drums, bass, chords)."""
    import soundfile as sf

    stems = synth_stems(seconds, rate, seed=2)
    mix = sum(stems.values())
    sf.write(path, np.clip(mix, -1, 1), rate, subtype="PCM_16")


def wait_for(driver, script: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(
        f"timed out waiting for {what}; page state: {driver.execute_script('return cunet.state()')}"
        f"; messages: {driver.find_element(By.ID, 'messages').text!r}"
    )


@pytest.fixture
def ui(tmp_path, tiny_tflite_path):
    """(driver, address, download folder, process) of `cunet ui` with the tiny test model (LiteRT)."""
    proc, url = start_ui("--model", str(tiny_tflite_path))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(downloads, tmp_path / "profile")
    try:
        yield driver, url, downloads, proc
    finally:
        driver.quit()
        if proc.poll() is None:
            stop_ui(proc)


def state(driver) -> dict:
    return driver.execute_script("return cunet.state()")


def downloaded(path: Path, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path.name} was not downloaded"
    return path


def test_the_song_plays_while_it_uploads_and_separates_and_downloads_as_cunet_separate_writes(
    ui, tmp_path, tiny_tflite_path
):
    driver, url, downloads, proc = ui
    song = tmp_path / "Synthetic Song.wav"
    write_song(song, 20.0)  # chunks of 10 s: the first is separated when the upload is half done
    driver.get(url)
    wait_for(
        driver,
        "return document.querySelectorAll('input[name=instrument]').length",
        20,
        "the instruments",
    )
    assert driver.find_element(By.TAG_NAME, "h1").text == "cunet"
    driver.find_element(By.ID, "residual").click()
    # the upload at 4x real time (a slow network): the separation follows it, the page plays along
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 700_000},
    )
    driver.find_element(By.ID, "files").send_keys(str(song))

    song_id = wait_for(
        driver,
        "return Object.keys(cunet.timings).find((k) => cunet.timings[k].firstSound)",
        60,
        "the first sound",
    )
    t = driver.execute_script(f"return cunet.timings['{song_id}']")
    first = state(driver)
    keys = ["vocals", "drums", "bass", "other", "no_vocals", "no_drums", "no_bass", "no_other"]
    assert [t["key"] for t in first["tracks"]] == keys
    assert [t["muted"] for t in first["tracks"]] == [False] * 4 + [
        True
    ] * 4  # residuals start muted
    assert first["playing"] and abs(first["duration"] - 20.0) < 0.01
    # all eight stems started together before the song was separated, indeed before it was uploaded
    assert t["firstSoundAvailable"] < 20 * 44100 and "uploaded" not in t, t
    assert first["available"] < 20.0 and not first["separated"]
    assert "separating" in driver.find_element(By.ID, "player-status").text
    pending = driver.execute_script(
        "return document.querySelector('.track .pending').getBoundingClientRect().width"
    )
    assert pending > 0  # the part still to come, shown on every waveform
    # the download buttons wait for the separation
    assert driver.find_elements(By.CSS_SELECTOR, "#stem-links a.disabled")

    # seeking into what is not separated yet waits for it, visibly, then plays from there
    driver.execute_script("cunet.seek(18.5)")
    if state(driver)["available"] < 19.5:
        assert state(driver)["waiting"]
        assert "waiting for the separation" in driver.find_element(By.ID, "player-status").text
        assert "waiting" in driver.find_element(By.ID, "player").get_attribute("class")
    wait_for(
        driver, "const s = cunet.state(); return s.playing && s.position > 18.5", 30, "the wait"
    )
    assert not state(driver)["waiting"]
    wait_for(driver, "return !cunet.state().playing", 10, "the end of the song")
    assert state(driver)["position"] == 0 and state(driver)["separated"]

    # play it through from the start with mute and solo: every stem's gain follows, nothing underruns
    driver.find_element(By.ID, "play").click()
    wait_for(driver, "return cunet.state().playing", 5, "playback to start")
    time.sleep(0.3)
    before = state(driver)
    time.sleep(1.0)
    after = state(driver)
    assert 0.6 < after["position"] - before["position"] < 1.6, (before, after)
    driver.find_element(By.CSS_SELECTOR, '.track[data-key="drums"] .mute').click()
    driver.find_element(By.CSS_SELECTOR, '.track[data-key="bass"] .solo').click()
    time.sleep(0.3)
    gains = {t["key"]: t["gain"] for t in state(driver)["tracks"]}
    assert gains["bass"] > 0.95 and all(g < 0.01 for k, g in gains.items() if k != "bass"), gains
    assert len(driver.find_elements(By.CSS_SELECTOR, ".track.silent")) == 7
    driver.find_element(By.CSS_SELECTOR, '.track[data-key="bass"] .solo').click()
    time.sleep(0.3)
    gains = {t["key"]: t["gain"] for t in state(driver)["tracks"]}
    assert gains["drums"] < 0.01 and gains["vocals"] > 0.95 and gains["no_vocals"] < 0.01, gains
    driver.find_element(By.ID, "karaoke").click()
    playing = [t["key"] for t in state(driver)["tracks"] if not t["muted"] and not t["solo"]]
    assert playing == ["no_vocals"]
    driver.find_element(By.ID, "everything").click()
    wait_for(driver, "return !cunet.state().playing", 30, "the end of the song")
    final = state(driver)
    assert final["underruns"] == 0 and final["late"] == 0 and final["stalls"] == 0, final
    # every stem's waveform is drawn all the way
    drawn = driver.execute_script("""return [...document.querySelectorAll('#tracks canvas')].map((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const right = c.width - 4; let n = 0;
        for (let y = 0; y < c.height; y++) if (d[4 * (y * c.width + right) + 3]) n++;
        return n; });""")
    assert len(drawn) == 8 and all(n > 0 for n in drawn), drawn

    # the downloads are what `cunet separate` writes for the same file and model
    rows = driver.find_elements(By.CSS_SELECTOR, "#song-list li.song")
    assert len(rows) == 1 and "Synthetic Song.wav" in rows[0].text and "8 stems" in rows[0].text
    out = tmp_path / "cli"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cunet",
            "separate",
            str(song),
            "-m",
            str(tiny_tflite_path),
            "-i",
            "all",
            "--residual",
            "-o",
            str(out),
            "-q",
        ],
        check=True,
        env=ENV,
        cwd=ROOT,
    )
    expected = out / "Synthetic Song"
    for key in ("vocals", "no_drums"):
        link = next(
            a for a in driver.find_elements(By.CSS_SELECTOR, "#stem-links a") if a.text == key
        )
        link.click()
        got = downloaded(downloads / f"Synthetic Song - {key}.wav")
        assert got.read_bytes() == (expected / f"{key}.wav").read_bytes(), key
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "format")).select_by_visible_text("flac")
    next(
        a for a in driver.find_elements(By.CSS_SELECTOR, "#stem-links a") if a.text == "bass"
    ).click()
    import soundfile as sf

    flac, rate = sf.read(downloaded(downloads / "Synthetic Song - bass.flac"), dtype="int16")
    wav, _ = sf.read(expected / "bass.wav", dtype="int16")
    assert rate == 44100 and np.array_equal(flac, wav)

    # remove the song: the list empties and the player closes; a stopped server is reported
    driver.find_element(By.CSS_SELECTOR, "#song-list .remove").click()
    wait_for(
        driver,
        "return !document.querySelector('#song-list li') && document.getElementById('player').hidden",
        10,
        "the song's removal",
    )
    assert stop_ui(proc) == 0
    text = wait_for(driver, "return document.getElementById('messages').innerText", 20, "a message")
    assert "cunet ui does not answer" in text


def test_non_audio_file_gets_a_message_on_the_page(ui, tmp_path):
    driver, url, _, _ = ui
    bogus = tmp_path / "notes.mp3"
    bogus.write_text("not music at all\n" * 50)
    driver.get(url)
    wait_for(
        driver,
        "return document.querySelectorAll('input[name=instrument]').length",
        20,
        "the instruments",
    )
    driver.find_element(By.ID, "files").send_keys(str(bogus))
    text = wait_for(driver, "return document.getElementById('messages').innerText", 30, "a message")
    assert "notes.mp3: not audio cunet can read" in text
    # the same through a drop on the page (a File made in the page, as a drag from the desktop delivers it)
    driver.execute_script("""const data = new DataTransfer();
        data.items.add(new File(['<html>not a song</html>'], 'page.html', {type: 'text/html'}));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true,
                                                                              cancelable: true}));""")
    text = wait_for(
        driver,
        "const t = document.getElementById('messages').innerText; "
        "return t.includes('page.html') && t",
        30,
        "a message for the dropped file",
    )
    assert "page.html: not audio cunet can read" in text
    assert driver.execute_script("return document.querySelectorAll('#song-list li').length") == 0
