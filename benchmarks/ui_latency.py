"""Drop to first sound and drop to fully separated in `cunet ui`, measured in headless chromium.

Starts `cunet ui --port 0 --no-browser` (the shipped model on LiteRT) and drives headless chromium (selenium,
/usr/bin/chromium and chromedriver) through the page as a user would: the song is given to the page's file
input (what a drop does); the page uploads it, plays its stems as soon as the first chunk of every stem is
separated, and keeps playing while the rest is separated. The page records when each step ended
(`window.cunet.timings`, ms of `performance.now()`) and counts underruns (a frame of the stems scheduled after
its start time, or playback waiting for the separation). Figures are medians over --repeats (the song is
removed between repeats):

- first sound: drop to every asked stem playing;
- fully separated: drop to the page seeing the song separated (the server's stems written; the poll's time);
- streamed: drop to the page holding every sample of every stem;
- server separation: the server's own time for the separation; cli: `cunet separate` on the same file in a
  fresh process right after (start-up and model loading included), for the machine's speed at that moment;
- CPU seconds of the server and of the browser (chromium and chromedriver) from drop to fully separated;
- reopen: a separated song opened again, to every stem received (the stems' transport alone).

With --baseline DIR (a checkout of an earlier cunet, e.g. `git worktree add /tmp/before HEAD`) its `cunet ui`
is measured in the same run, the two alternating repeat by repeat, and the ratios new/old are printed. An old
page that plays only once the whole song is separated and its stems fetched and decoded reports that moment
(`playable`) as its first sound. The harness waits for the page inside the page (one WebDriver call per
step); --driver-polling waits as the earlier version of this script did, with a WebDriver round trip every
20 ms, whose CPU the server's separation shares.

    python benchmarks/ui_latency.py --repeats 5                         # a 3-minute synthetic song, four stems
    python benchmarks/ui_latency.py --repeats 3 --baseline /tmp/before   # before/after ratios in one run
    python benchmarks/ui_latency.py --repeats 1 --screenshot docs/ui.png  # the README's screenshot
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
from typing import Any

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
# one WebDriver call that returns once `expression` is truthy, checked in the page every 20 ms
WAIT = """const done = arguments[arguments.length - 1];
const check = () => { let v = null; try { v = (EXPRESSION); } catch (e) { v = null; }
                      if (v) done(v); else setTimeout(check, 20); };
check();"""


def start_ui(root: Path) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cunet", "ui", "--port", "0", "--no-browser"],
        cwd=root,
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


def browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
    )
    driver.set_script_timeout(900)
    return driver


def wait_for(driver: Any, expression: str, polling: bool, timeout: float = 900) -> Any:
    """The value of the page's `expression` once it is truthy."""
    if not polling:
        return driver.execute_async_script(WAIT.replace("EXPRESSION", expression))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({expression})")
        if value:
            return value
        time.sleep(0.02)
    sys.exit("error: timed out")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / ticks
        todo += children.get(p, [])
    return total


def cli_separate(root: Path, song: Path, outdir: Path, residual: bool) -> float:
    """Wall seconds of `cunet separate SONG -i all` in a fresh process (start-up and model loading included)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "cunet", "separate", str(song), "-o", str(outdir), "-i", "all"]
    cmd += ["--force", "-q", *(["--residual"] if residual else [])]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=env, check=True)
    return time.perf_counter() - start


class Session:
    """One `cunet ui` (new or old) and a chromium on its page."""

    def __init__(self, name: str, root: Path, tmp: Path, residual: bool, polling: bool) -> None:
        from selenium.webdriver.common.by import By

        self.name, self.root, self.polling, self.by = name, root, polling, By
        self.proc, url = start_ui(root)
        self.driver = browser(tmp / f"profile-{name}")
        self.driver.get(url)
        wait_for(self.driver, "document.querySelectorAll('input[name=instrument]').length", polling)
        self.live = self.driver.execute_script("return Array.isArray(cunet.player.frames)")
        if residual:
            self.driver.find_element(By.ID, "residual").click()
        self.seen: list[str] = []

    def measure(self, song: Path, screenshot: str | None) -> dict[str, float]:
        driver, seen = self.driver, json.dumps(self.seen)
        browser_pid, server_pid = driver.service.process.pid, self.proc.pid
        cpu = (tree_cpu(server_pid), tree_cpu(browser_pid))
        driver.find_element(self.by.ID, "files").send_keys(str(song))
        new = f"Object.keys(cunet.timings).find((k) => !{seen}.includes(k)"
        if self.live:
            song_id = wait_for(driver, f"{new} && cunet.timings[k].firstSound)", self.polling)
            if screenshot:
                time.sleep(2.5)
                take_screenshot(driver, screenshot)
        else:
            song_id = wait_for(driver, f"{new} && cunet.timings[k].playable)", self.polling)
            driver.execute_script("cunet.play()")
        wait_for(driver, f"cunet.timings['{song_id}'].separated", self.polling)
        used = (tree_cpu(server_pid) - cpu[0], tree_cpu(browser_pid) - cpu[1])
        if self.live:
            wait_for(driver, f"cunet.timings['{song_id}'].streamed", self.polling)
        self.seen.append(song_id)
        t = driver.execute_script(f"return cunet.timings['{song_id}']")
        state = driver.execute_script("return cunet.state()")
        info = driver.execute_script(
            f"return fetch('/api/songs/{song_id}', {{headers: {{'X-Cunet-Token': "
            "document.querySelector('meta[name=cunet-token]').content}})"
            ".then((r) => r.json())"
        )
        first = t["firstSound"] if self.live else t["playable"]
        row = {
            "first_sound": (first - t["dropped"]) / 1000,
            "separated": (t["separated"] - t["dropped"]) / 1000,
            "streamed": ((t["streamed"] if self.live else t["playable"]) - t["dropped"]) / 1000,
            "server_separation": info["separation_seconds"],
            "server_cpu": used[0],
            "browser_cpu": used[1],
            "underruns": state.get("underruns", 0) if self.live else 0,
        }
        driver.execute_script("cunet.pause()")
        if self.live:  # the stems' transport alone: the separated song opened again
            driver.execute_script(
                f"cunet.close(); window.reopened = performance.now(); cunet.open('{song_id}')"
            )
            done = wait_for(driver, "cunet.state().separated && performance.now()", self.polling)
            row["reopen"] = (done - driver.execute_script("return window.reopened")) / 1000
        driver.find_element(self.by.CSS_SELECTOR, f'li[data-id="{song_id}"] .remove').click()
        wait_for(driver, f"!document.querySelector('li[data-id=\"{song_id}\"]')", self.polling)
        return row

    def close(self) -> None:
        self.driver.quit()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


def take_screenshot(driver: Any, path: str) -> None:
    driver.execute_script("document.activeElement.blur()")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, height + 140)
    time.sleep(0.4)
    driver.save_screenshot(path)
    print(f"screenshot: {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=180.0, help="synthetic song length (default: 180)"
    )
    parser.add_argument(
        "--song", default=None, help="use this audio file instead of a synthetic song"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--residual", action="store_true", help="also the no_<instrument> stems")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="an earlier checkout to compare with"
    )
    parser.add_argument(
        "--driver-polling", action="store_true", help="wait with a round trip every 20 ms"
    )
    parser.add_argument(
        "--no-cli", action="store_true", help="skip `cunet separate` after each repeat"
    )
    parser.add_argument(
        "--screenshot", default=None, help="save the page while the song plays and separates"
    )
    args = parser.parse_args()

    rows: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="cunet-ui-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.song:
            song = Path(args.song).resolve()
        else:
            song = write_synthetic_song(tmp / f"synthetic {args.seconds:g} s.wav", args.seconds)
        roots = {"new": ROOT, **({"old": args.baseline.resolve()} if args.baseline else {})}
        sessions = {
            name: Session(name, root, tmp, args.residual, args.driver_polling)
            for name, root in roots.items()
        }
        try:
            for repeat in range(args.repeats):
                order = list(sessions) if repeat % 2 == 0 else list(reversed(sessions))
                for name in order:
                    shot = args.screenshot if name == "new" and repeat == args.repeats - 1 else None
                    row = sessions[name].measure(song, shot)
                    if not args.no_cli:
                        row["cli"] = cli_separate(roots[name], song, tmp / "cli", args.residual)
                    rows.setdefault(name, []).append(row)
                    text = ", ".join(f"{k} {v:.2f}" for k, v in row.items())
                    print(f"repeat {repeat + 1} {name}: {text}", flush=True)
        finally:
            for session in sessions.values():
                session.close()
    stems = "all four stems" + (" and their residuals" if args.residual else "")
    length = song.name if args.song else f"a {args.seconds:g} s synthetic stereo 44.1 kHz WAV"
    print(
        f"\n{length}, {stems}; medians of {args.repeats} (load average {os.getloadavg()[0]:.2f}):"
    )
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rows.items()
    }
    names = list(medians)
    print(
        f"  {'':18s}"
        + "".join(f"{n:>10s}" for n in names)
        + ("     new/old" if len(names) > 1 else "")
    )
    for key in medians["new"]:
        values = [medians[n].get(key) for n in names]
        line = f"  {key:18s}" + "".join(f"{'-' if v is None else f'{v:.2f}':>10s}" for v in values)
        if len(names) > 1 and values[1]:
            line += f"{values[0] / values[1]:12.2f}"
        print(line)


if __name__ == "__main__":
    main()
