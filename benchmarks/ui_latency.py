"""Drop-to-playable time of `cunet ui`: from choosing a song in the page to its stems ready to play.

Starts `cunet ui --port 0 --no-browser` (the shipped model on LiteRT), drives headless chromium (selenium,
/usr/bin/chromium and chromedriver) through the page as a user would: the song is given to the page's file
input (what a drop does), uploaded, queued, separated into the stems, which the page downloads and decodes
(Web Audio) for the player. The page records when each step ended (`window.cunet.timings`, in ms of
`performance.now()`); the figures are medians over --repeats (the song is removed between repeats). After each
repeat the same song is separated by `cunet separate` in a fresh process (`cli_separate`: process start to
stems written), so the UI's own cost can be told from the machine's speed at that moment.

    python benchmarks/ui_latency.py                          # a 3-minute synthetic song, all four stems, 3 repeats
    python benchmarks/ui_latency.py --residual               # also the four no_<instrument> stems
    python benchmarks/ui_latency.py --song "$(python -c 'import stempeg; print(stempeg.example_stem_path())')" \
        --repeats 1 --screenshot docs/ui.png                  # the README's screenshot
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from separate_speed import write_synthetic_song  # noqa: E402

FLAGS = (
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
    "--window-size=1280,1000",
)


def start_ui() -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cunet", "ui", "--port", "0", "--no-browser"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+\?token=\S+)", line)
    if not match:
        proc.kill()
        sys.exit(f"error: cunet ui printed {line!r}")
    return proc, match.group(1)


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
    )


def wait_for(driver, script: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.02)
    sys.exit(
        f"error: timed out; page messages: {driver.execute_script('return messages.innerText')!r}"
    )


def cli_separate(song: Path, outdir: Path, residual: bool) -> float:
    """Wall seconds of `cunet separate SONG -i all` in a fresh process (start-up and model loading included)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "cunet",
        "separate",
        str(song),
        "-o",
        str(outdir),
        "-i",
        "all",
        "--force",
        "-q",
        *(["--residual"] if residual else []),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=180.0, help="length of the synthetic song (default: 180)"
    )
    parser.add_argument(
        "--song", default=None, help="use this audio file instead of a synthetic song"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--residual", action="store_true", help="also the no_<instrument> stems")
    parser.add_argument(
        "--screenshot", default=None, help="save the page with the last song playing here (PNG)"
    )
    args = parser.parse_args()
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory(prefix="cunet-ui-bench-") as tmp:
        tmp = Path(tmp)
        if args.song:
            song = Path(args.song).resolve()
        else:
            song = write_synthetic_song(tmp / f"synthetic {args.seconds:g} s.wav", args.seconds)
        proc, url = start_ui()
        driver = browser(tmp / "profile")
        rows, measured = [], []
        try:
            driver.get(url)
            wait_for(
                driver, "return document.querySelectorAll('input[name=instrument]').length", 30
            )
            if args.residual:
                driver.find_element(By.ID, "residual").click()
            for repeat in range(args.repeats):
                last = repeat == args.repeats - 1
                driver.find_element(By.ID, "files").send_keys(str(song))
                song_id = wait_for(
                    driver,
                    "return Object.keys(cunet.timings).find((k) => cunet.timings[k].playable "
                    f"&& !{json.dumps(measured)}.includes(k))",
                    600,
                )
                measured.append(song_id)
                t = driver.execute_script(f"return cunet.timings['{song_id}']")
                info = driver.execute_script(
                    f"return fetch('/api/songs/{song_id}', {{headers: {{'X-Cunet-Token': "
                    f"document.querySelector('meta[name=cunet-token]').content}}}})"
                    ".then((r) => r.json())"
                )
                row = {
                    "upload": (t["uploaded"] - t["dropped"]) / 1000,
                    "separate": (t["separated"] - t["uploaded"]) / 1000,
                    "server_separation": info["separation_seconds"],
                    "load_stems": (t["playable"] - t["separated"]) / 1000,
                    "total": (t["playable"] - t["dropped"]) / 1000,
                }
                rows.append(row)
                if last and args.screenshot:
                    driver.find_element(By.ID, "play").click()
                    time.sleep(0.2)
                    driver.execute_script(
                        "cunet.seek(cunet.player.duration * 0.42); document.activeElement.blur()"
                    )
                    time.sleep(0.6)
                    height = driver.execute_script("return document.documentElement.scrollHeight")
                    driver.set_window_size(1280, height + 140)
                    time.sleep(0.5)
                    driver.save_screenshot(args.screenshot)
                    print(f"screenshot: {args.screenshot}")
                row["cli_separate"] = cli_separate(song, tmp / "cli", args.residual)
                print(
                    f"repeat {repeat + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in row.items()),
                    flush=True,
                )
                if not last:
                    driver.find_element(By.CSS_SELECTOR, f'li[data-id="{song_id}"] .remove').click()
                    wait_for(
                        driver, f"return !document.querySelector('li[data-id=\"{song_id}\"]')", 60
                    )
        finally:
            driver.quit()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    stems = "all four stems" + (" and their residuals" if args.residual else "")
    length = song.name if args.song else f"a {args.seconds:g} s synthetic stereo 44.1 kHz WAV"
    print(f"\n{length}, {stems}; medians of {len(rows)} (load average {os.getloadavg()[0]:.2f}):")
    for key in rows[0]:
        print(f"  {key:18s} {statistics.median(r[key] for r in rows):6.2f} s")


if __name__ == "__main__":
    main()
