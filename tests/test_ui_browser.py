"""The page of `cunet ui` in a real headless browser (Debian's chromium and chromedriver, through selenium).

Starts `cunet ui --port 0 --no-browser` in a subprocess, loads the printed address, uploads a short synthetic
song, waits for the stems, plays them and checks that the position advances, solos a stem, downloads one.
Marked `browser`; it runs where chromium and chromedriver are installed (CI installs them) and is skipped
elsewhere, unless CUNET_REQUIRE_BROWSER=1 (then a missing browser fails; CI sets it). The README's
screenshot and the drop-to-playable time come from benchmarks/ui_latency.py, which drives the page alike.
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
    """`cunet ui --port 0 --no-browser` in a subprocess, and the address it printed."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cunet", "ui", "--port", "0", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
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
def ui(tmp_path):
    proc, url = start_ui()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(downloads, tmp_path / "profile")
    try:
        yield driver, url, downloads, proc
    finally:
        driver.quit()
        if proc.poll() is None:
            stop_ui(proc)


def test_upload_separate_play_solo_and_download(ui, tmp_path):
    driver, url, downloads, proc = ui
    song = tmp_path / "Synthetic Song.wav"
    write_song(song, 8.0)
    driver.get(url)
    wait_for(
        driver,
        "return document.querySelectorAll('input[name=instrument]').length",
        20,
        "the instruments",
    )
    assert driver.find_element(By.TAG_NAME, "h1").text == "cunet"
    driver.find_element(By.ID, "residual").click()
    driver.find_element(By.ID, "files").send_keys(str(song))

    state = wait_for(
        driver,
        "const s = cunet.state(); return s.tracks.length && !s.loading && s",
        60,
        "the stems in the player",
    )
    assert [t["key"] for t in state["tracks"]] == [
        "vocals",
        "drums",
        "bass",
        "other",
        "no_vocals",
        "no_drums",
        "no_bass",
        "no_other",
    ]
    assert abs(state["duration"] - 8.0) < 0.01
    assert [t["muted"] for t in state["tracks"]] == [False] * 4 + [
        True
    ] * 4  # residuals start muted
    rows = driver.find_elements(By.CSS_SELECTOR, "#song-list li.song")
    assert len(rows) == 1 and "Synthetic Song.wav" in rows[0].text and "8 stems" in rows[0].text
    # every stem has a waveform picture with something drawn on it
    drawn = driver.execute_script("""return [...document.querySelectorAll('#tracks canvas')].map((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n / (c.width * c.height); });""")
    assert len(drawn) == 8 and all(0.01 < f < 1 for f in drawn), drawn

    driver.find_element(By.ID, "play").click()
    wait_for(driver, "return cunet.state().playing", 5, "playback to start")
    time.sleep(0.3)
    first = driver.execute_script("return cunet.state()")
    time.sleep(1.0)
    second = driver.execute_script("return cunet.state()")
    assert second["playing"] and 0.6 < second["position"] - first["position"] < 1.6, (first, second)
    assert second["contextTime"] > first["contextTime"]
    assert driver.find_element(By.ID, "time").text.startswith("0:0")

    # solo the bass: every other stem goes silent (its gain falls to zero), the bass stays at full volume
    driver.find_element(By.CSS_SELECTOR, '.track[data-key="bass"] .solo').click()
    time.sleep(0.3)
    state = driver.execute_script("return cunet.state()")
    gains = {t["key"]: t["gain"] for t in state["tracks"]}
    assert [t["key"] for t in state["tracks"] if t["solo"]] == ["bass"]
    assert gains["bass"] > 0.95 and all(g < 0.01 for k, g in gains.items() if k != "bass"), gains
    silent = driver.find_elements(By.CSS_SELECTOR, ".track.silent")
    assert len(silent) == 7

    # karaoke: the no_vocals stem alone
    driver.find_element(By.ID, "karaoke").click()
    state = driver.execute_script("return cunet.state()")
    assert [t["key"] for t in state["tracks"] if not t["muted"] and not t["solo"]] == ["no_vocals"]

    # seek by clicking the middle of a waveform, then pause
    wave = driver.find_element(By.CSS_SELECTOR, '.track[data-key="drums"] .wave')
    driver.execute_script(
        """const r = arguments[0].getBoundingClientRect();
        arguments[0].dispatchEvent(new MouseEvent('click', {clientX: r.left + r.width / 2, clientY: r.top + 5,
                                                            bubbles: true}));""",
        wave,
    )
    position = driver.execute_script("return cunet.state().position")
    assert 3.9 < position < 4.6, position
    driver.find_element(By.ID, "play").click()
    paused = driver.execute_script("return cunet.state()")
    time.sleep(0.3)
    assert (
        not paused["playing"]
        and driver.execute_script("return cunet.state().position") == paused["position"]
    )

    # download the bass as flac
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "format")).select_by_visible_text("flac")
    link = next(
        a
        for a in driver.find_elements(By.CSS_SELECTOR, "#stem-links a")
        if a.text.strip() == "bass"
    )
    link.click()
    target = downloads / "Synthetic Song - bass.flac"
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    import soundfile as sf

    audio, rate = sf.read(target)
    assert rate == 44100 and audio.shape == (8 * 44100, 2)

    # remove the song: the list empties and the player closes
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
